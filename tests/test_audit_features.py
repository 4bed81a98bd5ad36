"""audit.label_errors.method=features: frozen backbone features + k-fold logistic regression, the same
cleanlab step and outputs as cross_fit, and the duplicate section's confirmation from the same features."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import save_file

from litvision.data_audit.feature_probabilities import out_of_sample_probabilities
from litvision.data_audit.label_errors import COLUMNS
from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.weights.sources import META_PREPROCESSING
from litvision.tasks.audit import audit
from litvision.utils.errors import ConfigError
from tests.helpers.audit_planting import altered, copy_tree, flip_labels
from tests.helpers.run_helpers import TINY_MODEL

CONF = Path(__file__).resolve().parents[1] / "conf"


def weight_file(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A small_cnn (width 8) with random weights: its features separate the generated colour classes."""
    torch.manual_seed(0)
    net = build_backbone("small_cnn", num_classes=10, width=8)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=metadata)
    return path


def audit_config(out: Path, data: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "audit",
            overrides=[
                f"paths.root_dir={out}",
                f"paths.output_dir={out}",
                f"dataset.data_dir={data}",
                *TINY_MODEL,
                "logger=none",
                "audit.num_workers=0",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def planted(fake_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """The generated CIFAR tree with 5% of its training labels flipped and test/5 copied (shifted) into train/0."""
    from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split

    root = tmp_path_factory.mktemp("features_audit")
    flipped = set(flip_labels(fake_cifar_root, root / "flipped", fraction=0.05, seed=0)) - {"train/0"}
    images, labels = load_split(root / "flipped" / CIFAR10_DIRNAME, train=True)
    test_images, test_labels = load_split(root / "flipped" / CIFAR10_DIRNAME, train=False)
    images[0], labels[0] = altered(test_images[5], "shift", 0), test_labels[5]
    copy_tree(root / "flipped", root / "data", images, labels)
    return root / "data", flipped


def count_backbone_images() -> tuple[Counter, object]:
    """Images per forward call of any small_cnn network, by a real global forward hook."""
    seen: Counter = Counter()
    kind = type(build_backbone("small_cnn", num_classes=2, width=8))

    def hook(module, inputs):
        if isinstance(module, kind):
            seen["images"] += int(inputs[0].shape[0])
            seen["calls"] += 1

    return seen, torch.nn.modules.module.register_module_forward_pre_hook(hook)


def test_features_method_finds_flips_with_the_cross_fit_outputs_and_embeds_each_image_once(
    planted: tuple[Path, set[str]], tmp_path: Path
) -> None:
    data, flipped = planted
    weights = weight_file(tmp_path / "w.safetensors")
    args = [
        f"model.backbone.weights={weights}",
        "audit.label_errors.method=features",
        "audit.sections=[duplicates,label_errors]",
    ]
    seen, handle = count_backbone_images()
    try:
        summary = audit(audit_config(tmp_path / "a", data, *args))
    finally:
        handle.remove()
    # 200 training images (label errors) + test/5 (the duplicate pair's other image): each through the network once
    assert seen["images"] == 201
    out = tmp_path / "a" / "audit"
    with open(out / "label_issues.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS  # the cross-fit's columns
        suspects = [row["id"] for row in reader]
    hits = len(set(suspects) & flipped)
    assert hits >= 0.6 * len(flipped) and hits >= 0.8 * len(suspects), (hits, len(flipped), suspects)
    stored = np.load(out / "out_of_sample.npz")
    assert set(stored.files) == {"ids", "labels", "probabilities"} and len(stored["ids"]) == 200
    assert np.allclose(stored["probabilities"].sum(axis=1), 1, atol=1e-5)
    report = (out / "report.md").read_text()
    assert "Method: `features`" in report and "logistic regression" in report
    assert summary["label_errors/embed_seconds"] >= 0 and summary["label_errors/fit_seconds"] >= 0
    assert json.loads((out / "summary.json").read_text())["label_errors/num_issues"] == len(suspects)

    # the planted pair is found by the thumbnail search and confirmed by the features
    with open(out / "duplicates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["a"], r["b"], r["confirmed"]) for r in rows] == [("train/0", "test/5", "true")]
    assert float(rows[0]["feature_similarity"]) >= 0.9
    with open(out / "duplicates_our_splits.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames[-2:] == ["feature_similarity", "confirmed"]
    strict = audit(audit_config(tmp_path / "strict", data, *args, "audit.duplicates.feature_min_similarity=1.01"))
    assert strict["duplicates/confirmed_by_features"] == 0 and summary["duplicates/confirmed_by_features"] == 1

    # deterministic: the same suspects and probabilities again
    audit(audit_config(tmp_path / "b", data, *args))
    assert (tmp_path / "b" / "audit" / "label_issues.csv").read_text() == (out / "label_issues.csv").read_text()
    assert np.array_equal(
        np.load(tmp_path / "b" / "audit" / "out_of_sample.npz")["probabilities"], stored["probabilities"]
    )


def test_features_without_a_backbone_source_is_refused_in_one_line(fake_cifar_root: Path, tmp_path: Path) -> None:
    for extra, expected in (
        ([], "needs a backbone to take features from"),
        ([f"model.backbone.weights={weight_file(tmp_path / 'w.safetensors')}", "audit.fold=0"], "trains no folds"),
        (["audit.label_errors.method=guess"], "use one of"),
    ):
        overrides = ["audit.sections=[label_errors]", "audit.label_errors.method=features", *extra]
        with pytest.raises(ConfigError) as err:
            audit(audit_config(tmp_path / "out", fake_cifar_root, *overrides))
        assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "audit").exists()  # refused before anything was read or written


def test_features_use_the_preprocessing_the_weights_carry(fake_cifar_root: Path, tmp_path: Path) -> None:
    from litvision.data_audit.sources import load_audit_data
    from litvision.tasks.audit_features import feature_store

    record = {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5], "resize": 40, "crop": 36}
    weights = weight_file(tmp_path / "w.safetensors", {META_PREPROCESSING: json.dumps(record)})
    cfg = audit_config(
        tmp_path, fake_cifar_root, f"model.backbone.weights={weights}", "audit.label_errors.method=features"
    )
    from hydra.utils import instantiate

    data = load_audit_data(instantiate(cfg.dataset))
    store = feature_store(cfg, data)
    assert store.normalize.channel_mean == pytest.approx((0.1, 0.2, 0.3))
    assert store._tensor("train/0").shape == (3, 36, 36)  # resize 40 then centre crop 36
    assert store.features(["train/0", "train/1"]).shape == (2, store.dimension)
    assert not store.network.training and not isinstance(list(store.network.children())[-1], torch.nn.Linear)


def test_logistic_regression_probabilities_are_out_of_sample() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(0, 1, (120, 8)).astype(np.float32)
    features[np.arange(120), labels] += 4.0
    features[7] = np.nan  # an unreadable image
    probabilities = out_of_sample_probabilities(features, labels, 4, folds=3, seed=0, C=1.0, max_iter=500)
    assert probabilities.shape == (120, 4) and np.isnan(probabilities[7]).all()
    rest = np.delete(np.arange(120), 7)
    assert np.allclose(probabilities[rest].sum(axis=1), 1, atol=1e-5)
    assert (probabilities[rest, 3] == 0).all()  # a class no fold trained on
    assert (probabilities[rest].argmax(axis=1) == labels[rest]).mean() > 0.9
    # a memorising fit would give a flipped image its given label; out of sample it gets its true class
    flipped = labels.copy()
    flipped[0] = 2
    again = out_of_sample_probabilities(features, flipped, 3, folds=3, seed=0, C=1.0, max_iter=500)
    assert again[0].argmax() == 0


@pytest.mark.slow
def test_features_from_a_checkpoint_also_filter_near_pairs_without_embedding_twice(
    planted: tuple[Path, set[str]], tmp_path: Path
) -> None:
    """audit.ckpt_path= as the backbone: its network without the head gives the features; the duplicate
    section's embedding filter takes them from the same store (201 images through the network, not more)."""
    from tests.helpers.run_helpers import run_script

    data, _ = planted
    run_script(
        "train.py",
        f"dataset.data_dir={data}",
        *TINY_MODEL,
        "trainer.max_epochs=2",
        "logger=none",
        "test=false",
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    (checkpoint,) = (tmp_path / "train" / "checkpoints").glob("best_*.ckpt")
    seen, handle = count_backbone_images()
    try:
        summary = audit(
            audit_config(
                tmp_path / "a",
                data,
                f"audit.ckpt_path={checkpoint}",
                "audit.label_errors.method=features",
                "audit.sections=[duplicates,label_errors]",
            )
        )
    finally:
        handle.remove()
    assert seen["images"] == 201
    assert summary["label_errors/out_of_sample_accuracy"] > 0.5 and summary["duplicates/near_cross_split"] == 1
    assert "audit.ckpt_path=" in (tmp_path / "a" / "audit" / "report.md").read_text()
    assert not (tmp_path / "a" / "audit" / "checkpoint_predictions").exists()  # its predictions are not used
