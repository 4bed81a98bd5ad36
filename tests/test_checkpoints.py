"""Checkpoints hold plain hyper-parameters and load with weights_only=True; compiled ones load anywhere."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.checkpoints import convert_trusted_checkpoint, load_checkpoint, load_classifier
from litvision.lightning_modules.classifier import ImageClassifier
from litvision.lightning_modules.plain_config import build_factory, factory_config, is_plain
from litvision.utils.errors import ConfigError, DataError

CLASSES = ["a", "b", "c", "d", "e", "f"]


def _loader(n: int = 24) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 16, 16, generator=generator)
    targets = torch.arange(n) % len(CLASSES)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=8)


def _classifier(**kwargs) -> ImageClassifier:
    """Plain-Python construction, as in the README: factories given as functools.partial."""
    torch.manual_seed(0)
    return ImageClassifier(
        backbone=functools.partial(build_backbone, "small_cnn", width=4),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.99)),
        scheduler=functools.partial(
            __import__("litvision.lightning_modules.training.schedulers", fromlist=["x"]).one_cycle
        ),
        class_names=CLASSES,
        **kwargs,
    )


def _fit(model: ImageClassifier, root: Path, ckpt_path: str | None = None, max_steps: int = 2) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        plugins=[__import__("litvision.plugins.atomic_checkpoint", fromlist=["x"]).AtomicCheckpointIO()],
    )
    trainer.fit(model, _loader(), ckpt_path=ckpt_path, weights_only=True)
    return trainer


def _save(model: ImageClassifier, trainer: L.Trainer, path: Path) -> Path:
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_of_a_plain_python_model_loads_with_weights_only(tmp_path: Path) -> None:
    model = _classifier()
    path = _save(model, _fit(model, tmp_path), tmp_path / "model.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # refuses any pickled callable
    hparams = checkpoint["hyper_parameters"]
    assert is_plain(dict(hparams))
    assert hparams["backbone"] == {
        "_target_": "litvision.lightning_modules.backbones.build_backbone",
        "_args_": ["small_cnn"],
        "width": 4,
        "_partial_": True,
    }
    assert hparams["optimizer"]["betas"] == [0.9, 0.99]
    # and it is the same model again
    loaded = load_classifier(path)
    images = torch.rand(2, 3, 16, 16)
    model.eval(), loaded.eval()
    assert torch.equal(model(images), loaded(images))
    assert loaded.class_names == CLASSES


def test_factory_configs_round_trip_and_refuse_what_cannot_be_stored() -> None:
    config = factory_config(functools.partial(torch.optim.SGD, lr=0.3, momentum=0.5), "optimizer")
    optimizer = build_factory(config)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.3
    for bad in (lambda params: torch.optim.SGD(params, lr=0.1), functools.partial(_local_factory()), object()):
        with pytest.raises(ConfigError, match="cannot be stored in a checkpoint"):
            factory_config(bad, "optimizer")
    with pytest.raises(ConfigError):  # a partial whose arguments are not plain
        factory_config(functools.partial(torch.optim.SGD, lr=torch.tensor(0.1)), "optimizer")


def _local_factory():
    def make(params):
        return torch.optim.SGD(params, lr=0.1)

    return make


def _old_style_checkpoint(
    model: ImageClassifier, trainer: L.Trainer, path: Path, hyper_parameters: dict | None = None, **extra
) -> Path:
    """A checkpoint as litvision wrote them before: factories pickled in the hyper-parameters
    (``hyper_parameters``: more of them; ``extra``: more top-level entries)."""
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    checkpoint["hyper_parameters"] = {
        **checkpoint["hyper_parameters"],
        "backbone": functools.partial(build_backbone, "small_cnn", width=4),
        "optimizer": functools.partial(torch.optim.AdamW, lr=1e-3),
        **(hyper_parameters or {}),
    }
    torch.save({**checkpoint, **extra}, path)
    return path


def test_checkpoint_with_a_pickled_callable_is_refused_in_one_line_then_converted(tmp_path: Path) -> None:
    model = _classifier()
    trainer = _fit(model, tmp_path)
    old = _old_style_checkpoint(model, trainer, tmp_path / "old.ckpt")
    with pytest.raises(DataError) as refused:
        load_checkpoint(old)
    message = str(refused.value)
    assert "\n" not in message and "functools.partial" in message and "convert_trusted_checkpoint" in message
    # resuming from it through Lightning (AtomicCheckpointIO) is refused the same way
    with pytest.raises(DataError, match="could run code"):
        _fit(_classifier(), tmp_path, ckpt_path=str(old), max_steps=3)

    converted = convert_trusted_checkpoint(old)
    assert converted == tmp_path / "old.plain.ckpt"
    loaded = load_classifier(converted)
    images = torch.rand(2, 3, 16, 16)
    model.eval(), loaded.eval()
    assert torch.equal(model(images), loaded(images))


def _touch(path: str) -> None:
    Path(path).write_text("the checkpoint ran code")


class _RunsCodeWhenLoaded:
    """Pickled as a call of ``_touch``: loading it with weights_only=False creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return _touch, (self.path,)


def test_converting_an_old_checkpoint_never_runs_code_it_carries(tmp_path: Path) -> None:
    model = _classifier()
    trainer = _fit(model, tmp_path)
    marker = tmp_path / "ran"
    old = _old_style_checkpoint(model, trainer, tmp_path / "old.ckpt", payload=_RunsCodeWhenLoaded(marker))
    with pytest.raises(
        DataError, match=r"cannot be converted: it calls (tests\.)?test_checkpoints\._touch while loading"
    ) as refused:
        convert_trusted_checkpoint(old)
    assert "\n" not in str(refused.value)
    assert not marker.exists() and not (tmp_path / "old.plain.ckpt").exists()


def test_old_checkpoint_with_omegaconf_hyper_parameters_converts(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    model = _classifier()
    trainer = _fit(model, tmp_path)
    names = OmegaConf.create(list(CLASSES))  # as Hydra hands a list to a constructor
    old = _old_style_checkpoint(model, trainer, tmp_path / "old.ckpt", {"class_names": names})
    loaded = load_classifier(convert_trusted_checkpoint(old))
    assert loaded.hparams["class_names"] == CLASSES
    assert loaded.hparams["optimizer"] == {"_target_": "torch.optim.adamw.AdamW", "lr": 1e-3, "_partial_": True}


def test_missing_or_corrupt_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ckpt_path=.*does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_compiled_model_keeps_its_state_dict_keys_and_loads_uncompiled(tmp_path: Path) -> None:
    """model.compile: compiled in place (nn.Module.compile), so checkpoints say net.*, not net._orig_mod.*.
    The eager backend runs the real torch.compile machinery (dynamo) without C++ code generation."""
    model = _classifier(compile={"backend": "eager"})
    trainer = _fit(model, tmp_path)
    assert model.net._compiled_call_impl is not None  # it really was compiled for fitting
    path = _save(model, trainer, tmp_path / "compiled.ckpt")
    keys = list(torch.load(path, weights_only=True)["state_dict"])
    assert keys and not [k for k in keys if "_orig_mod" in k]

    plain = _classifier()
    checkpoint = torch.load(path, weights_only=True)
    plain.load_state_dict(checkpoint["state_dict"])  # strict: every key matches an uncompiled model
    # and resuming the uncompiled model from it continues training
    _fit(plain, tmp_path, ckpt_path=str(path), max_steps=3)


def test_checkpoint_written_by_a_torch_compile_wrapper_loads_into_any_model(tmp_path: Path) -> None:
    """Keys ``net._orig_mod.*`` (torch.compile(net), what compile=true wrote before) are renamed on load."""
    model = _classifier()
    trainer = _fit(model, tmp_path)
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    checkpoint["state_dict"] = {k.replace("net.", "net._orig_mod.", 1): v for k, v in checkpoint["state_dict"].items()}
    path = tmp_path / "wrapped.ckpt"
    torch.save(checkpoint, path)

    loaded = load_classifier(path)  # eval.py's path
    images = torch.rand(2, 3, 16, 16)
    model.eval(), loaded.eval()
    assert torch.equal(model(images), loaded(images))
    _fit(_classifier(), tmp_path, ckpt_path=str(path), max_steps=3)  # the resume path (Lightning)


@pytest.mark.slow
def test_compiled_run_resumes_and_evaluates_through_the_scripts(fake_cifar_root: Path, tmp_path: Path) -> None:
    """model.compile=true (inductor): ckpt_path=last resumes it and eval.py tests its checkpoint."""
    from tests.helpers.run_helpers import TINY_MODEL, read_metrics, run_script

    run_dir = tmp_path / "run"
    common = [
        *TINY_MODEL,
        "model.compile=true",
        "logger=csv",
        "ckpt_path=last",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
    ]
    run_script("train.py", *common, "trainer.max_epochs=1", "test=false", timeout=900)
    resumed = run_script("train.py", *common, "trainer.max_epochs=2", timeout=900)
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4 and not [k for k in last["state_dict"] if "_orig_mod" in k]  # 2 epochs x 2 steps
    eval_dir = tmp_path / "eval"
    run_script(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={eval_dir}",
        "dataset.num_workers=0",
        timeout=600,
    )
    assert "test/acc_top1" in read_metrics(eval_dir)
