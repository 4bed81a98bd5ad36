"""Suspected label errors: cleanlab ranking of out-of-sample probabilities from cross-fitting with the
project's own training, or from a checkpoint on a split it was not trained on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from litvision.data_audit.label_errors import mixture_count, rank_label_issues
from litvision.tasks.audit import chosen_sections
from litvision.tasks.audit_cross_fit import fold_assignment
from litvision.utils.errors import ConfigError
from tests.helpers.audit_planting import flip_labels
from tests.helpers.run_helpers import TINY_MODEL, run_script

TINY_FOLDS = [*TINY_MODEL, "audit.label_errors.folds=2", "audit.label_errors.epochs=1", "logger=none"]


def read_issues(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "audit" / "label_issues.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["id", "given_label", "suggested_label", "quality"]
        return list(reader)


def confident_probabilities(
    labels: np.ndarray, num_classes: int, rng: np.random.Generator, strength: float = 6.0
) -> np.ndarray:
    logits = rng.normal(0, 1, (len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += strength
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ranking_puts_contradicted_labels_first_and_estimates_their_number() -> None:
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 100)
    probabilities = confident_probabilities(truth, 4, rng)
    given = truth.copy()
    flipped = rng.choice(len(truth), 20, replace=False)
    given[flipped] = (truth[flipped] + 1 + rng.integers(0, 3, 20)) % 4
    suspects, quality = rank_label_issues(given, probabilities, num_issues="off_diagonal")  # a strong model
    order = np.argsort(quality, kind="stable")
    assert set(order[:20].tolist()) == set(flipped.tolist())  # the flipped labels have the lowest quality
    assert suspects.tolist() == order[: len(suspects)].tolist()
    assert abs(len(suspects) - 20) <= 4  # cleanlab's estimate of the number of issues
    assert abs(len(rank_label_issues(given, probabilities)[0]) - 20) <= 10  # the mixture estimate (default)
    assert np.all(np.diff(quality[suspects]) >= 0)  # best suspects (lowest quality) first
    fixed, _ = rank_label_issues(given, probabilities, num_issues=7)
    assert fixed.tolist() == suspects[:7].tolist()
    with pytest.raises(ConfigError):
        rank_label_issues(given, probabilities, rank_by="loudest")
    with pytest.raises(ConfigError):
        rank_label_issues(given, probabilities, num_issues="guess")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_estimate_counts_wrong_labels_not_the_models_mistakes(seed: int) -> None:
    """A weak model (~57% top-1) and 5% labels flipped at random: the mixture estimate is close to the
    number of flips, cleanlab's off-diagonal count is several times too large (the model's own mistakes)."""
    from cleanlab.count import num_label_issues

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, 4000)
    logits = rng.normal(0, 1.5, (4000, 10))
    logits[np.arange(4000), truth] += 2.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(4000, 200, replace=False)
    given[flipped] = (truth[flipped] + rng.integers(1, 10, 200)) % 10
    assert 0.5 < (probabilities.argmax(axis=1) == truth).mean() < 0.65
    assert 150 <= mixture_count(given, probabilities) <= 260
    assert num_label_issues(given, probabilities) > 3 * 200
    assert mixture_count(truth, probabilities) <= 80  # clean labels: under 2% (cleanlab: over 15%)
    assert num_label_issues(truth, probabilities) > 600


def test_folds_are_stratified_deterministic_and_cover_every_sample() -> None:
    targets = np.repeat(np.arange(5), [30, 30, 30, 12, 3])
    folds = fold_assignment(targets, 3, seed=1)
    assert np.array_equal(folds, fold_assignment(targets, 3, seed=1))
    assert not np.array_equal(folds, fold_assignment(targets, 3, seed=2))
    assert set(folds.tolist()) == {0, 1, 2}
    for c in range(4):  # every class spread evenly over the folds
        counts = np.bincount(folds[targets == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ConfigError):
        fold_assignment(targets, 1, seed=0)


@pytest.mark.slow
def test_cross_fit_folds_as_a_multirun_then_merged(fake_cifar_root: Path, tmp_path: Path) -> None:
    """Each fold is a train.py run that never loads its own images (recorded by a callback in the
    fold's real training loop) and predicts exactly them; the folds run as multirun jobs into one
    folds_dir and a later run merges them without training again."""
    folds_dir = tmp_path / "folds"
    recorder = [
        "+callbacks.id_recorder._target_=tests.helpers.id_recorder.IdRecorder",
        "+callbacks.id_recorder.out_dir=${paths.output_dir}/ids",
    ]
    common = [
        f"dataset.data_dir={fake_cifar_root}",
        "audit.sections=[label_errors]",
        *TINY_FOLDS,
        f"audit.folds_dir={folds_dir}",
    ]
    run_script(
        "audit.py", "-m", "audit.fold=0,1", *common, *recorder, f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=600
    )
    all_ids = {f"train/{i}" for i in range(200)}
    held = {}
    for k in (0, 1):
        fold = folds_dir / f"fold_{k}"
        held[k] = {line for line in (fold / "held_out_ids.txt").read_text().splitlines() if not line.startswith("#")}
        seen = set()
        for stage in ("train", "val"):
            seen |= set(json.loads((fold / "ids" / f"{stage}_rank0.json").read_text())["ids"])
        assert seen == all_ids - held[k]  # trained and validated on everything but its fold
        with open(fold / "predictions.csv", newline="") as f:
            assert {row["id"] for row in csv.DictReader(f)} == held[k]  # predicted exactly its fold
    assert held[0] | held[1] == all_ids and not held[0] & held[1]

    merge = run_script("audit.py", *common, f"hydra.run.dir={tmp_path / 'merge'}")
    log = merge.stdout + merge.stderr
    assert log.count("already done") == 2 and "training without" not in log
    issues = read_issues(tmp_path / "merge")
    merged = np.load(tmp_path / "merge" / "audit" / "out_of_sample.npz")
    assert sorted(merged["ids"].tolist()) == sorted(all_ids)
    assert all(row["id"] in all_ids for row in issues) and len({row["id"] for row in issues}) == len(issues)
    assert (tmp_path / "merge" / "audit" / "label_issues.png").is_file() or not issues


@pytest.mark.slow
def test_checkpoint_mode_ranks_a_split_the_model_was_not_trained_on(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_script(
        "train.py",
        f"dataset.data_dir={fake_cifar_root}",
        *TINY_MODEL,
        "trainer.max_epochs=2",
        "logger=none",
        "test=false",
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    (checkpoint,) = (tmp_path / "train" / "checkpoints").glob("best_*.ckpt")
    run_script(
        "audit.py",
        f"dataset.data_dir={fake_cifar_root}",
        *TINY_MODEL,
        "logger=none",
        "audit.sections=[label_errors]",
        f"audit.ckpt_path={checkpoint}",
        "audit.label_errors.split=source_test",
        "audit.label_errors.num_issues=5",
        f"hydra.run.dir={tmp_path / 'audit'}",
    )
    issues = read_issues(tmp_path / "audit")
    assert len(issues) == 5 and all(row["id"].startswith("test/") for row in issues)
    stored = np.load(tmp_path / "audit" / "audit" / "out_of_sample.npz")
    assert len(stored["ids"]) == 70 and np.allclose(stored["probabilities"].sum(axis=1), 1, atol=1e-5)
    assert not (tmp_path / "audit" / "audit" / "folds").exists()  # no cross-fitting

    # the same checkpoint confirms near-duplicate pairs by their embeddings: a shifted copy of a test image
    # planted in train is kept at the default distance and dropped when no distance is close enough
    from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split
    from tests.helpers.audit_planting import altered, copy_tree

    images, labels = load_split(fake_cifar_root / CIFAR10_DIRNAME, train=True)
    test_images, _ = load_split(fake_cifar_root / CIFAR10_DIRNAME, train=False)
    images[0] = altered(test_images[5], "shift", 0)
    copy_tree(fake_cifar_root, tmp_path / "planted", images, labels)
    for max_distance, kept in (("0.1", 1), ("-1", 0)):
        proc = run_script(
            "audit.py",
            f"dataset.data_dir={tmp_path / 'planted'}",
            *TINY_MODEL,
            "logger=none",
            "audit.sections=[duplicates]",
            f"audit.ckpt_path={checkpoint}",
            f"audit.duplicates.embedding_max_distance={max_distance}",
            f"hydra.run.dir={tmp_path / max_distance}",
        )
        assert f"confirms {kept} of 1 near-duplicate pairs" in proc.stdout + proc.stderr
        with open(tmp_path / max_distance / "audit" / "duplicates.csv", newline="") as f:
            assert [(r["a"], r["b"]) for r in csv.DictReader(f)] == [("train/0", "test/5")] * kept


def test_fold_options_are_checked(fake_cifar_root: Path, tmp_path: Path) -> None:
    proc = run_script(
        "audit.py",
        f"dataset.data_dir={fake_cifar_root}",
        "trainer=ddp_sim",
        "logger=none",
        "audit.sections=[label_errors]",
        f"hydra.run.dir={tmp_path / 'a'}",
        check=False,
    )
    assert proc.returncode == 1 and "audit.fold=0,1,2" in proc.stderr
    with pytest.raises(ConfigError, match="typo"):
        chosen_sections(["balance", "typo"])
    assert chosen_sections(["duplicates", "balance", "duplicates"]) == ["duplicates", "balance"]
    proc = run_script(
        "audit.py",
        "-m",
        f"dataset.data_dir={fake_cifar_root}",
        "audit.fold=0",
        "logger=none",
        "audit.sections=[label_errors]",
        f"hydra.sweep.dir={tmp_path / 'c'}",
        check=False,
    )
    assert "audit.folds_dir=DIR" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_flipped_labels_in_the_real_subset_are_found(cifar_subset_root: Path, tmp_path: Path) -> None:
    """Issue 9 acceptance: 5% of the real subset's training labels flipped at random -> label_issues.csv
    reaches precision >= 0.4 and recall >= 0.5 on the flipped ids, with the default folds and epochs and
    the command of the issue (experiment=cifar10_cpu). Prints the precision/recall curve over the ranking."""
    flipped = set(flip_labels(cifar_subset_root, tmp_path / "data", fraction=0.05, seed=0))
    run_dir = tmp_path / "run"
    run_script(
        "audit.py",
        "experiment=cifar10_cpu",
        f"dataset.data_dir={tmp_path / 'data'}",
        "audit.sections=[label_errors]",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        timeout=7200,
    )
    issues = [row["id"] for row in read_issues(run_dir)]
    hits = np.cumsum([sample_id in flipped for sample_id in issues])
    precision, recall = hits[-1] / len(issues), hits[-1] / len(flipped)
    print(f"flipped {len(flipped)}, reported {len(issues)}: precision {precision:.3f}, recall {recall:.3f}")
    stored = np.load(run_dir / "audit" / "out_of_sample.npz")
    ranking = [
        str(i)
        for i in stored["ids"][
            np.argsort(stored["probabilities"][np.arange(len(stored["ids"])), stored["labels"]], kind="stable")
        ]
    ]
    curve = np.cumsum([sample_id in flipped for sample_id in ranking])
    for k in (50, 100, 150, 200, 233, 300, 400, 500, 700, 1000):
        print(f"  top {k:5d}: precision {curve[k - 1] / k:.3f} recall {curve[k - 1] / len(flipped):.3f}")
    assert precision >= 0.4 and recall >= 0.5
