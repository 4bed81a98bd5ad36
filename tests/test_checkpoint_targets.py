"""Building from a checkpoint FILE constructs only what litvision vouches for (lightning_modules/checkpoint_targets.py).

Every payload here would run code on the old loader (the nested one demonstrably: WebDataset's
``pipe:`` runs ``touch``); each is refused in one line naming the hyper-parameter and the
target, and the marker file it would create never appears.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import lightning
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.lightning_modules.checkpoint_targets import CheckpointTrust, check_checkpoint_targets
from litvision.lightning_modules.checkpoints import convert_trusted_checkpoint, load_classifier
from litvision.lightning_modules.classifier import ImageClassifier
from litvision.utils.errors import ConfigError, DataError
from tests.helpers.fake_cifar import CIFAR10_CLASSES
from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script

BUILD_BACKBONE = "litvision.lightning_modules.backbones.build_backbone"
SMALL_CNN = {"_target_": BUILD_BACKBONE, "_args_": ["small_cnn"], "width": 4, "_partial_": True}
BENIGN_FOREIGN = "tests.helpers.timm_like.create_model"  # harmless, but not litvision's: must be trusted explicitly


def _write(path: Path, model: ImageClassifier, **hparams) -> Path:
    """A checkpoint as a run writes it, with some hyper-parameters replaced (what an attacker controls)."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": {**dict(model.hparams), **hparams},
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(checkpoint, path)
    return path


def _small_model() -> ImageClassifier:
    return ImageClassifier(backbone=dict(SMALL_CNN), class_names=CIFAR10_CLASSES)


def _nested_payload(marker: Path) -> dict:
    """read_manifest("pipe:touch MARKER;"): WebDataset runs the shell command to read the manifest."""
    return {"_target_": "litvision.datamodules.shards.manifest.read_manifest", "_args_": [f"pipe:touch {marker};"]}


def _interpolated_payload(marker: Path) -> str:
    """The same, made by OmegaConf when hydra resolves the string (it builds the new node's target)."""
    return (
        "${oc.create:{_target_: litvision.datamodules.shards.manifest.read_manifest, _args_: ['pipe:touch "
        + f"{marker};']}}}}"
    )


def _payloads(marker: Path) -> dict[str, tuple[dict, str, str]]:
    """name -> (hyper-parameters, the key the refusal names, the target it names)."""
    return {
        "nested in a backbone argument": (
            {"backbone": {**SMALL_CNN, "options": _nested_payload(marker)}},
            "backbone.options",
            "litvision.datamodules.shards.manifest.read_manifest",
        ),
        "nested in a list argument": (
            {
                "scheduler": {
                    "_target_": "litvision.lightning_modules.training.schedulers.multistep",
                    "_partial_": True,
                    "milestones": [0.5, _nested_payload(marker)],
                }
            },
            "scheduler.milestones[1]",
            "litvision.datamodules.shards.manifest.read_manifest",
        ),
        "os.system as the backbone": (
            {"backbone": {"_target_": "os.system", "_args_": [f"touch {marker}"], "_partial_": True}},
            "backbone._target_",
            "os.system",
        ),
        "builtins.exec as the optimizer": (
            {"optimizer": {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w')"], "_partial_": True}},
            "optimizer._target_",
            "builtins.exec",
        ),
        "subprocess.call as the loss": (
            {"loss": {"_target_": "subprocess.call", "_args_": [["touch", str(marker)]], "_partial_": True}},
            "loss._target_",
            "subprocess.call",
        ),
        "a target in another hyper-parameter": (
            {"mixing": _nested_payload(marker)},
            "mixing",
            "litvision.datamodules.shards.manifest.read_manifest",
        ),
        "an interpolation that creates a target": (
            {"backbone": {**SMALL_CNN, "options": _interpolated_payload(marker)}},
            "backbone.options",
            "interpolation",
        ),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("x"))))
def test_a_payload_is_refused_in_one_line_and_never_runs(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hparams, key, target = _payloads(marker)[name]
    path = _write(tmp_path / "evil.ckpt", _small_model(), **hparams)
    for load in (load_classifier, ImageClassifier.load_from_checkpoint):
        with pytest.raises(DataError) as refused:
            load(path)
        message = str(refused.value)
        assert "\n" not in message and f"ckpt_path={path}" in message
        assert key in message and target in message, message
        assert not marker.exists()


def test_a_refused_target_is_not_even_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "lv_payload_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef factory(**kw): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(
        tmp_path / "evil.ckpt", _small_model(), backbone={"_target_": "lv_payload_module.factory", "_partial_": True}
    )
    with pytest.raises(DataError, match=r"backbone\._target_='lv_payload_module\.factory'.*nothing was imported"):
        load_classifier(path)
    assert not marker.exists() and "lv_payload_module" not in sys.modules


def test_unknown_hyper_parameters_are_refused(tmp_path: Path) -> None:
    """e.g. Lightning's own ``_instantiator`` key: the classifier takes no such argument."""
    path = _write(tmp_path / "odd.ckpt", _small_model(), _instantiator="os.system")
    with pytest.raises(DataError, match=r"hyper-parameters \['_instantiator'\] are not arguments of ImageClassifier"):
        load_classifier(path)


def test_trusted_targets_load_and_nothing_else_is_let_through(tmp_path: Path) -> None:
    foreign = {"_target_": BENIGN_FOREIGN, "_partial_": True, "model_name": "small_cnn", "width": 4}
    model = ImageClassifier(backbone=foreign, class_names=CIFAR10_CLASSES)  # from the user's own code: not checked
    path = _write(tmp_path / "foreign.ckpt", model)
    with pytest.raises(DataError, match=rf"trust_checkpoint_targets=\[{BENIGN_FOREIGN}\]"):
        load_classifier(path)
    images = torch.rand(2, 3, 32, 32)
    model.eval()
    for trust in ({"trust_checkpoint_targets": [BENIGN_FOREIGN]}, {"trust_checkpoint": True}):
        for load in (load_classifier, ImageClassifier.load_from_checkpoint):
            loaded = load(path, **trust).eval()
            assert torch.equal(loaded(images), model(images))
    # trusting one target lets nothing else through
    evil = _write(tmp_path / "evil.ckpt", model, loss=_nested_payload(tmp_path / "ran"))
    with pytest.raises(DataError, match="loss._target_"):
        load_classifier(evil, trust_checkpoint_targets=[BENIGN_FOREIGN])
    with pytest.raises(ConfigError, match="trust_checkpoint="):
        load_classifier(path, trust_checkpoint="yes")


def test_torch_optimizers_are_allowed_under_both_names_and_nothing_near_them() -> None:
    def check(target: str) -> None:
        check_checkpoint_targets({"optimizer": {"_target_": target, "lr": 0.1}}, "ckpt_path=x.ckpt")

    for target in (
        "torch.optim.SGD",
        "torch.optim.sgd.SGD",
        "torch.optim.AdamW",
        "torch.optim.adamw.AdamW",
        "litvision.lightning_modules.training.optimizers.sgd_scaled_vectors",
    ):
        check(target)
    for target in (
        "torch.optim.Optimizer",
        "torch.optim.lr_scheduler.LambdaLR",
        "torch.optim.SGD ",
        "torch.load",
        "lightning_modules.optimizers.sgd_scaled_vectors",
        BUILD_BACKBONE,
    ):
        with pytest.raises(DataError, match="optimizer._target_"):
            check(target)


def test_timm_create_model_is_allowed_only_when_timm_is_installed_and_without_file_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def check(**arguments) -> None:
        backbone = {"_target_": "timm.create_model", "_partial_": True, "model_name": "resnet18", **arguments}
        check_checkpoint_targets({"backbone": backbone}, "ckpt_path=x.ckpt")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real_find_spec(name, *a)
    )
    with pytest.raises(DataError, match="backbone._target_='timm.create_model'"):
        check()
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "timm" else real_find_spec(name, *a)
    )
    check(pretrained=False, drop_path_rate=0.1)
    for arguments in (
        {"checkpoint_path": "/tmp/evil.pth"},
        {"pretrained_cfg_overlay": {"file": "/tmp/evil.pth"}},
        {"model_name": "local-dir:/tmp/evil"},
    ):
        with pytest.raises(DataError, match="read files or hub configs"):
            check(**arguments)
    assert "timm" not in sys.modules or real_find_spec("timm") is not None  # deciding imported nothing


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", *overrides])


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO_ROOT / "conf" / group).glob("*.yaml") if not p.stem.startswith("_"))


OUR_MODELS = [name for name in _options("model") if name != "timm"]
PRESETS = [f"{group}={name}" for group in ("optimizer", "scheduler", "loss") for name in _options(group)]


@pytest.mark.parametrize("override", [f"model={name}" for name in OUR_MODELS] + PRESETS)
def test_our_own_checkpoints_load(override: str, tmp_path: Path) -> None:
    """Every backbone of the registry's model options and every optimizer/scheduler/loss preset of conf/."""
    extra = [] if override.startswith("model=") else ["model=small_cnn", "model.backbone.width=4"]
    cfg = _compose(override, *extra)
    counts = [5 + i for i in range(10)]
    model = instantiate(cfg.model, class_names=CIFAR10_CLASSES, class_counts=counts)
    path = _write(tmp_path / "ours.ckpt", model)
    loaded = load_classifier(path)
    assert loaded.hparams["backbone"] == model.hparams["backbone"]
    assert loaded.hparams["optimizer"] == model.hparams["optimizer"]
    assert loaded.hparams["scheduler"] == model.hparams["scheduler"]
    assert loaded.hparams["loss"] == model.hparams["loss"]


def test_converted_old_checkpoints_go_through_the_same_check(tmp_path: Path) -> None:
    from tests.helpers.timm_like import create_model

    model = ImageClassifier(backbone=functools.partial(create_model, "small_cnn", width=4), class_names=CIFAR10_CLASSES)
    old = {
        "state_dict": model.state_dict(),
        "pytorch-lightning_version": lightning.__version__,
        "hyper_parameters": {**dict(model.hparams), "backbone": functools.partial(create_model, "small_cnn", width=4)},
    }
    torch.save(old, tmp_path / "old.ckpt")
    converted = convert_trusted_checkpoint(tmp_path / "old.ckpt")
    with pytest.raises(DataError, match=rf"backbone._target_='{BENIGN_FOREIGN}'"):
        load_classifier(converted)
    assert load_classifier(converted, trust_checkpoint_targets=[BENIGN_FOREIGN]).class_names == CIFAR10_CLASSES


def test_trust_keys_are_in_every_entry_config() -> None:
    for name in ("train", "eval", "predict", "audit"):
        text = (REPO_ROOT / "conf" / f"{name}.yaml").read_text()
        assert "\ntrust_checkpoint: false" in text and "\ntrust_checkpoint_targets: []" in text, name
    assert CheckpointTrust.of() == CheckpointTrust(False, frozenset())


@pytest.fixture(scope="module")
def evil_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "ran"
    model = _small_model()
    return _write(folder / "evil.ckpt", model, backbone={**SMALL_CNN, "options": _nested_payload(marker)}), marker


@pytest.mark.parametrize(
    "script, ckpt_key, extra",
    [
        ("eval.py", "ckpt_path", []),
        ("predict.py", "ckpt_path", ["split=test"]),
        ("audit.py", "audit.ckpt_path", ["audit.sections=[label_errors]", "audit.label_errors.split=source_test"]),
    ],
)
def test_the_scripts_refuse_the_payload_unrun(
    script: str,
    ckpt_key: str,
    extra: list[str],
    evil_checkpoint: tuple[Path, Path],
    fake_cifar_root: Path,
    tmp_path: Path,
) -> None:
    path, marker = evil_checkpoint
    proc = run_script(
        script,
        f"{ckpt_key}={path}",
        f"dataset.data_dir={fake_cifar_root}",
        "logger=none",
        "dataset.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        *extra,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert lines[-1].startswith("DataError: ckpt_path=") and "backbone.options" in lines[-1], lines[-1]
    assert "litvision.datamodules.shards.manifest.read_manifest" in lines[-1] and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_eval_py_with_a_trusted_target(fake_cifar_root: Path, tmp_path: Path) -> None:
    """The config key reaches the loader (refused without it: test_trusted_targets_load_and_nothing_else_is_let_through)."""
    model = ImageClassifier(
        backbone={"_target_": BENIGN_FOREIGN, "_partial_": True, "model_name": "small_cnn", "width": 4},
        class_names=CIFAR10_CLASSES,
    )
    path = _write(tmp_path / "foreign.ckpt", model)
    common = [f"ckpt_path={path}", f"dataset.data_dir={fake_cifar_root}", "logger=none", "dataset.num_workers=0"]
    run_script("eval.py", *common, f"trust_checkpoint_targets=[{BENIGN_FOREIGN}]", f"hydra.run.dir={tmp_path / 'run'}")
    assert "test/acc_top1" in read_metrics(tmp_path / "run")


def test_checkpoints_from_before_the_layout_move_still_load(tmp_path: Path) -> None:
    """Losses, schedulers and optimizer helpers moved to lightning_modules/training/: a
    checkpoint written before names them by the old module path, renamed on load (no import)."""
    cfg = _compose(
        "loss=focal",
        "scheduler=cosine",
        "optimizer=sgd_scaled_vectors",
        "mixing=mixup",
        "model=small_cnn",
        "model.backbone.width=4",
    )
    model = instantiate(cfg.model, class_names=CIFAR10_CLASSES, class_counts=[5 + i for i in range(10)])
    path = _write(tmp_path / "new.ckpt", model)
    checkpoint = torch.load(path, weights_only=True)
    for key in ("loss", "scheduler", "optimizer"):
        target = checkpoint["hyper_parameters"][key]["_target_"]
        assert target.startswith("litvision.lightning_modules.training."), target
        checkpoint["hyper_parameters"][key]["_target_"] = target.replace(".training.", ".", 1)
    torch.save(checkpoint, tmp_path / "old_layout.ckpt")
    loaded = load_classifier(tmp_path / "old_layout.ckpt")
    for key in ("loss", "scheduler", "optimizer"):
        assert loaded.hparams[key] == model.hparams[key]
