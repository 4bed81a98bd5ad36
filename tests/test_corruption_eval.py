"""``eval.py robustness=corruptions`` end to end: robustness.json against a direct computation, mCE against a
reference file, the report files, one-line refusals; the test hook on class folders and shards.

The data dictate the predictions (tests/helpers/report_models.py: the model predicts the class written
in each image's red channel), so the expected accuracy of every variant is computed here from the
same images, corrupted in this process by the same hook, and the pass in the loader workers
(``num_workers=2``) must reproduce it exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from litvision.callbacks.robustness_report import wilson
from litvision.datamodules.cifar10 import cifar_ids
from litvision.datamodules.transforms.corruptions.hook import CorruptionHook
from litvision.lightning_modules.classifier import ImageClassifier
from tests.helpers.report_models import CLASSES, EncodedPredictionNet, encoded_images, write_encoded_cifar
from tests.helpers.run_helpers import read_metrics, run_script

CORRUPTIONS = ["gaussian_noise", "brightness", "contrast", "fog"]
SEVERITIES = [1, 3, 5]
NET = "tests.helpers.report_models.EncodedPredictionNet"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("corrupt")
    rng = np.random.default_rng(0)
    n = 30
    labels = rng.integers(0, len(CLASSES), n)
    predicted = np.where(rng.random(n) < 0.8, labels, rng.integers(0, len(CLASSES), n))
    margins = rng.uniform(0.5, 3, n)
    test = (labels, predicted, margins)
    train = (np.repeat(np.arange(len(CLASSES)), 4), np.repeat(np.arange(len(CLASSES)), 4), np.ones(20))
    data = write_encoded_cifar(root / "data", train, test)
    model = ImageClassifier(backbone=functools.partial(EncodedPredictionNet), class_names=CLASSES)
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
    )
    images = torch.from_numpy(encoded_images(predicted, margins)).permute(0, 3, 1, 2).float()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.as_tensor(labels)), batch_size=8)
    trainer.fit(model, loader)
    trainer.save_checkpoint(root / "model.ckpt")
    return {"data": data, "ckpt": root / "model.ckpt", "images": encoded_images(predicted, margins), "labels": labels}


def evaluate(setup: dict, run_dir: Path, *overrides: str, check: bool = True):
    return run_script(
        "eval.py",
        f"ckpt_path={setup['ckpt']}",
        f"dataset.data_dir={setup['data']}",
        f"hydra.run.dir={run_dir}",
        f"trust_checkpoint_targets=[{NET}]",
        "augmentation=none",
        "augmentation.normalize=null",
        "dataset.batch_size=16",
        "robustness=corruptions",
        *overrides,
        check=check,
        timeout=300,
    )


def expected_accuracy(setup: dict, hook: CorruptionHook) -> dict[str, float]:
    """Each variant's top-1 computed here: the hook on every image, the net's rule on the result."""
    net = EncodedPredictionNet(len(CLASSES))
    ids = cifar_ids("test", len(setup["labels"]))
    accs = {}
    for v, name in enumerate(hook.names()):
        batch = np.stack([hook(image, str(i), v) for image, i in zip(setup["images"], ids, strict=True)])
        logits = net(torch.from_numpy(batch).permute(0, 3, 1, 2))
        accs[name] = float((logits.argmax(1).numpy() == setup["labels"]).mean())
    return accs


def test_robustness_json_matches_a_direct_computation(setup: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    evaluate(
        setup,
        run,
        f"robustness.corruptions=[{','.join(CORRUPTIONS)}]",
        f"robustness.severities={SEVERITIES}",
        "dataset.num_workers=2",
    )
    report = json.loads((run / "robustness.json").read_text())
    expected = expected_accuracy(setup, CorruptionHook(CORRUPTIONS, SEVERITIES, seed=0))
    n = len(setup["labels"])
    assert report["clean"]["acc"] == expected["clean"]
    assert sorted(report["corruptions"]) == sorted(CORRUPTIONS)
    accs = []
    for name in CORRUPTIONS:
        assert sorted(report["corruptions"][name]) == [str(s) for s in SEVERITIES]
        for s in SEVERITIES:
            row = report["corruptions"][name][str(s)]
            assert row["acc"] == pytest.approx(expected[f"{name}/{s}"], abs=1e-12), (name, s)
            assert row["n"] == n
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(row["correct"], n))
            accs.append(row["acc"])
    assert len(set(accs)) > 1  # the corruptions do change predictions here
    assert report["mean_corruption_acc"] == pytest.approx(np.mean(accs))
    assert report["drop"] == pytest.approx(expected["clean"] - np.mean(accs))
    assert report["mCE"] is None  # 5 classes, no reference
    metrics = read_metrics(run)
    assert metrics["corruptions/fog/3/acc_top1"] == pytest.approx(expected["fog/3"])
    assert metrics["corruptions/mean_acc"] == pytest.approx(np.mean(accs))
    assert metrics["test/acc_top1"] == pytest.approx(expected["clean"])  # the plain test still runs
    assert (run / "robustness_heatmap.png").stat().st_size > 1000
    text = (run / "report.md").read_text()
    assert "## Corruptions" in text and "robustness_heatmap.png" in text and "| fog |" in text
    assert "Corruptions (robustness.json" in (run / "robustness.md").read_text()  # the robustness report saw it

    # mCE against that run as the reference: 1.0 exactly (the same images, the same model); a rerun
    # with another num_workers gives the same numbers
    again = tmp_path / "again"
    evaluate(
        setup,
        again,
        f"robustness.corruptions=[{','.join(CORRUPTIONS)}]",
        f"robustness.severities={SEVERITIES}",
        f"robustness.reference={run / 'robustness.json'}",
        "dataset.num_workers=0",
    )
    second = json.loads((again / "robustness.json").read_text())
    assert second["corruptions"] == report["corruptions"]
    errors = {c: [1 - report["corruptions"][c][str(s)]["acc"] for s in SEVERITIES] for c in CORRUPTIONS}
    finite = all(sum(e) > 0 for e in errors.values())
    assert second["mCE"] == (pytest.approx(1.0) if finite else None)
    assert read_metrics(again)["corruptions/mCE"] == second["mCE"]


def test_mce_against_a_hand_made_reference(setup: dict, tmp_path: Path) -> None:
    """CE = sum of errors / sum of reference errors, relative CE over the clean error, averaged."""
    ref_clean, ref_acc = 0.9, {"1": 0.6, "5": 0.2}
    reference = {"clean": {"acc": ref_clean}, "corruptions": {"contrast": ref_acc}}
    reference = {"clean": {"acc": ref_clean}, "corruptions": {"contrast": {s: {"acc": a} for s, a in ref_acc.items()}}}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference))
    run = tmp_path / "run"
    evaluate(
        setup,
        run,
        "robustness.corruptions=[contrast]",
        "robustness.severities=[1,5]",
        f"robustness.reference={path}",
        "dataset.num_workers=0",
    )
    report = json.loads((run / "robustness.json").read_text())
    err = [1 - report["corruptions"]["contrast"][s]["acc"] for s in ("1", "5")]
    clean_err = 1 - report["clean"]["acc"]
    ce = sum(err) / sum(1 - a for a in ref_acc.values())
    rel = sum(e - clean_err for e in err) / sum((1 - a) - (1 - ref_clean) for a in ref_acc.values())
    assert report["mCE"] == pytest.approx(ce) and report["CE"]["contrast"] == pytest.approx(ce)
    assert report["relative_mCE"] == pytest.approx(rel)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["robustness.corruptions=[gaussian_noise,speckle]"], "unknown corruption 'speckle'"),
        (["robustness.severities=[0,1]"], "severity 0"),
        (["robustness.severities=[6]"], "severity 6"),
        (["robustness.reference=/nonexistent/robustness.json"], "no such file"),
        (["robustness.reference=BAD"], "not a robustness.json"),
        (["robustness.corruptions=[fog]", "robustness.reference=PARTIAL"], "has no fog at severity"),
    ],
)
def test_bad_options_are_one_line(setup: dict, tmp_path: Path, overrides: list[str], message: str) -> None:
    bad, partial = tmp_path / "bad.json", tmp_path / "partial.json"
    bad.write_text("{not json")
    partial.write_text(json.dumps({"clean": {"acc": 0.5}, "corruptions": {"fog": {"1": {"acc": 0.4}}}}))
    overrides = [o.replace("=BAD", f"={bad}").replace("=PARTIAL", f"={partial}") for o in overrides]
    proc = evaluate(setup, tmp_path / "run", "dataset.num_workers=0", *overrides, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "robustness.json").exists()


# ---- the hook on class folders and shards ---------------------------------------------------
def _digests(loader) -> Counter:
    return Counter(
        (hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest(), int(y), int(v))
        for xb, yb, vb in loader
        for x, y, v in zip(xb, yb, vb, strict=True)
    )


def test_class_folders_and_shards_get_the_same_corrupted_images(tmp_path: Path) -> None:
    """Files (map-style) and shards (stream, 2 workers) give every test image under every variant, the
    same pixels: the hook depends on the sample id only, not on the loader, worker or order."""
    pytest.importorskip("webdataset")
    from albumentations import Compose, Resize

    from litvision.datamodules.class_folder import ClassFolderDataModule
    from litvision.datamodules.shard_datamodule import ShardDataModule
    from litvision.datamodules.shards.prepare import prepare
    from tests.helpers.imagenet_trees import build_train, build_val, generated_samples

    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=3, size=(40, 56))
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    folders: dict = {"val_split": "val", "test_split": "val", "progress": False}
    prepare(ClassFolderDataModule(str(root), **folders), tmp_path / "shards", samples_per_shard=4, workers=1)
    transform = Compose([Resize(24, 24)])
    hook = CorruptionHook(["gaussian_noise", "pixelate"], [1, 5], seed=0)
    files = ClassFolderDataModule(
        str(root), **folders, batch_size=4, num_workers=0, train_transform=transform, eval_transform=transform
    )
    shards = ShardDataModule(
        str(tmp_path / "shards"), batch_size=4, num_workers=2, train_transform=transform, eval_transform=transform
    )
    for datamodule in (files, shards):
        datamodule.setup("test")
        datamodule.set_test_hook(hook)
    from_files, from_shards = _digests(files.test_dataloader()), _digests(shards.test_dataloader())
    assert sum(from_files.values()) == 9 * len(hook) and from_files == from_shards
    assert len({digest for digest, _, v in from_files if v == 0}) == 9  # clean copies
    assert len({digest for digest, *_ in from_files}) > 9 * (len(hook) - 1)  # the variants differ
    # direct: the hook on each decoded, resized image by its id
    plain = files.splits.test
    direct = Counter()
    for i in range(len(plain)):
        image, label = plain[i]
        for v in range(len(hook)):
            out = hook(image.permute(1, 2, 0).numpy(), str(plain.ids[i]), v)
            direct[
                (
                    hashlib.sha1(torch.from_numpy(out).permute(2, 0, 1).contiguous().numpy().tobytes()).hexdigest(),
                    label,
                    v,
                )
            ] += 1
    assert direct == from_files
    files.set_test_hook(None)
    assert len(next(iter(files.test_dataloader()))) == 2  # plain batches again


def test_device_resident_data_refuses_the_hook_in_one_line(setup: dict) -> None:
    from litvision.datamodules.device_resident import DeviceCIFAR10DataModule
    from litvision.utils.errors import ConfigError

    datamodule = DeviceCIFAR10DataModule(data_dir=str(setup["data"]), download=False)
    with pytest.raises(ConfigError, match="dataset=cifar10"):
        datamodule.set_test_hook(CorruptionHook(["fog"], [1]))


@pytest.mark.slow
def test_the_corruption_pass_is_exact_under_ddp(setup: dict, tmp_path: Path) -> None:
    """trainer=ddp_sim (2 processes, 30 test images: 15 each) counts every image of every variant once."""
    chosen = ["fog", "pixelate"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    evaluate(setup, single, f"robustness.corruptions=[{','.join(chosen)}]", "robustness.severities=[1,5]")
    evaluate(
        setup, ddp, f"robustness.corruptions=[{','.join(chosen)}]", "robustness.severities=[1,5]", "trainer=ddp_sim"
    )
    one, two = (json.loads((run / "robustness.json").read_text()) for run in (single, ddp))
    assert two["corruptions"] == one["corruptions"]
    assert two["clean"]["acc"] == one["clean"]["acc"]
    assert all(row["n"] == len(setup["labels"]) for rows in two["corruptions"].values() for row in rows.values())
