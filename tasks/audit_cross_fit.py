"""Out-of-sample predicted probabilities for every training image, by k-fold cross-fitting.

Each fold is a training run exactly as ``train.py`` makes it (``litvision.tasks.train.train`` on the
audit's own config: same dataset, model, recipe), with the fold's images left out through
``dataset.exclude_ids``; the fold's checkpoint then predicts the left-out images through the predict
task (``litvision.tasks.predict.predict``, split ``source_<train>`` restricted to the fold the same
way). A fold's result is ``<folds_dir>/fold_<k>/out_of_sample.npz``; finished folds are reused, so
folds can run as separate jobs (``-m audit.fold=0,1,2``) and a last run merges them.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, open_dict

from litvision.data_audit.folds import fold_assignment
from litvision.data_audit.sources import AuditData
from litvision.datamodules.sampling.exclusions import id_list_text, read_exclusion_file
from litvision.utils.atomic_write import write_atomic, write_text_atomic
from litvision.utils.errors import ConfigError, DataError
from litvision.utils.names import escape_name, read_csv_cell

log = logging.getLogger(__name__)

RESULT = "out_of_sample.npz"


def plan_digest(ids: np.ndarray, targets: np.ndarray, assignment: np.ndarray, recipe: str) -> str:
    """Identifies a fold plan and recipe: a folds_dir from another dataset or config is refused."""
    digest = hashlib.blake2b(digest_size=12)
    for part in (ids.astype(str), targets.astype(np.int64), assignment.astype(np.int64)):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(recipe.encode())
    return digest.hexdigest()


def write_id_list(path: Path, ids: list[str] | np.ndarray, comment: str) -> Path:
    """An id file in the ``dataset.exclude_ids`` format (one id per line, ``#`` comments)."""
    write_text_atomic(path, id_list_text([(comment, ids)]))
    return path


def single_device(trainer_cfg: DictConfig) -> bool:
    devices = trainer_cfg.get("devices", 1)
    return str(devices) == "1" and int(trainer_cfg.get("num_nodes", 1) or 1) == 1


class CrossFit:
    """k-fold cross-fitting of the training source split with the run's own training code."""

    def __init__(
        self, cfg: DictConfig, data: AuditData, folds_dir: str | Path, folds: int, epochs: int | None, seed: int
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.split = data.splits[data.train_split]
        self.folds_dir = Path(folds_dir)
        self.folds = folds
        self.epochs = epochs
        self.ids = self.split.ids
        self.targets = self.split.targets
        self.assignment = fold_assignment(self.targets, folds, seed)
        user_file = cfg.dataset.get("exclude_ids")
        self.user_excluded = read_exclusion_file(user_file) if user_file else []
        recipe = repr(sorted(_recipe(cfg, epochs).items()))
        self.digest = plan_digest(self.ids, self.targets, self.assignment, recipe)

    def fold_dir(self, k: int) -> Path:
        return self.folds_dir / f"fold_{k}"

    def done(self, k: int) -> bool:
        path = self.fold_dir(k) / RESULT
        if not path.is_file():
            return False
        with np.load(path) as stored:
            if str(stored["digest"]) != self.digest:
                raise DataError(
                    f"{path} belongs to another fold plan or recipe (dataset, folds, fold seed, model, epochs): "
                    "use another audit.folds_dir, or delete it to recompute"
                )
        return True

    def run_fold(self, k: int) -> Path:
        """Train fold ``k`` without its images, predict them; returns the result file."""
        from litvision.tasks.predict import predict
        from litvision.tasks.train import train
        from litvision.utils.distributed import global_rank

        if not 0 <= k < self.folds:
            raise ConfigError(f"audit.fold={k}: must be in 0..{self.folds - 1} (audit.label_errors.folds={self.folds})")
        out = self.fold_dir(k)
        held = self.ids[self.assignment == k]
        log.info("audit: fold %d/%d: training without its %d images in %s", k + 1, self.folds, len(held), out)
        left_out = write_id_list(
            out / "held_out_ids.txt",
            [*held, *self.user_excluded],
            f"fold {k}: images this fold's model is not trained on",
        )
        metrics = train(self._train_config(out, left_out))
        checkpoint = best_checkpoint(out / "checkpoints")

        keep = set(held.tolist())
        others = [sample_id for sample_id in self.ids if sample_id not in keep]
        only_held = write_id_list(
            out / "not_held_out_ids.txt",
            [*others, *self.user_excluded],
            f"fold {k}: every training image but the fold's (the fold is predicted)",
        )
        summary = predict(self._predict_config(out, checkpoint, only_held))
        if global_rank() != 0:
            return out / RESULT  # rank zero writes the predictions and the result
        if list(summary["classes"]) != [escape_name(name) for name in self.data.class_names]:
            raise DataError(f"fold {k}: the model's classes {summary['classes'][:5]}... are not the dataset's")
        predicted_ids = np.asarray(_read_ids(Path(summary["predictions"])), dtype=str)
        probabilities = np.load(summary["probabilities"])
        if set(predicted_ids.tolist()) - keep:
            raise DataError(f"fold {k}: predictions for images outside the fold (exclude_ids not applied?)")
        result = out / RESULT
        write_atomic(
            result,
            lambda handle: np.savez(
                handle,
                ids=predicted_ids,
                probabilities=probabilities.astype(np.float32),
                digest=np.asarray(self.digest),
                val_accuracy=np.asarray(float(metrics.get("val/acc_best", np.nan))),
            ),
        )
        log.info(
            "audit: fold %d done: held-out top-1 %.3f (%d images)",
            k,
            summary.get("accuracy_top1") or float("nan"),
            len(predicted_ids),
        )
        return result

    def run(self) -> None:
        for k in range(self.folds):
            if self.done(k):
                log.info("audit: fold %d already done in %s: reused", k, self.fold_dir(k))
            else:
                self.run_fold(k)

    def missing(self) -> list[int]:
        return [k for k in range(self.folds) if not self.done(k)]

    def collect(self) -> np.ndarray:
        """Out-of-sample probabilities (N, C) in split order; NaN rows for unreadable images."""
        probabilities = np.full((len(self.ids), len(self.data.class_names)), np.nan, np.float32)
        for k in range(self.folds):
            with np.load(self.fold_dir(k) / RESULT) as stored:
                positions = [self.split.position(str(sample_id)) for sample_id in stored["ids"]]
                known = [position for position in positions if position is not None]
                if len(known) != len(positions):  # the digest check makes this a damaged file
                    raise DataError(f"{self.fold_dir(k) / RESULT} names images the split does not have: delete it")
                probabilities[known] = stored["probabilities"]
        return probabilities

    def _train_config(self, out: Path, left_out: Path) -> DictConfig:
        """The audit's config as train.py would run it, without the fold's images, into ``out``."""
        fold = copy.deepcopy(self.cfg)
        with open_dict(fold):
            fold.paths.output_dir = str(out)
            fold.dataset.exclude_ids = str(left_out)
            if self.epochs is not None:
                fold.trainer.max_epochs = int(self.epochs)
            fold.train, fold.test = True, False  # the fold's own test metrics are not needed
            fold.ckpt_path = "last"  # a fold killed mid-way resumes when the audit is re-run
            fold.logger = None  # folds log to <fold dir>/metrics.json; the audit's W&B run gets the findings
        return fold

    def _predict_config(self, out: Path, checkpoint: Path, only_held: Path) -> DictConfig:
        config = copy.deepcopy(self.cfg)
        with open_dict(config):
            config.paths.output_dir = str(out)
            config.dataset.exclude_ids = str(only_held)
            config.ckpt_path = str(checkpoint)
            # written just now from the audit's own config: the targets that config names are the user's
            config.trust_checkpoint_targets = [*(config.get("trust_checkpoint_targets") or []), *own_targets(self.cfg)]
            config.split = f"source_{self.split.name}"
            config.images = None
            config.predict_data.split = config.split
            config.logger = None
            config.callbacks = {
                "prediction_writer": {
                    "_target_": "litvision.callbacks.prediction_writer.PredictionWriter",
                    "output_dir": str(out),
                }
            }
        return config


def _recipe(cfg: DictConfig, epochs: int | None) -> dict[str, Any]:
    """What makes fold results comparable: the training recipe (not the audit's own options)."""
    from omegaconf import OmegaConf

    keys = ("model", "optimizer", "scheduler", "loss", "sampler", "mixing", "augmentation", "seed")
    recipe = {
        key: OmegaConf.to_container(cfg[key], resolve=False) if isinstance(cfg.get(key), DictConfig) else cfg.get(key)
        for key in keys
    }
    recipe["epochs"] = epochs if epochs is not None else cfg.trainer.get("max_epochs")
    return recipe


def own_targets(cfg: DictConfig) -> list[str]:
    """Every ``_target_`` the recipe's model config names (backbone, optimizer, scheduler, loss)."""
    from omegaconf import OmegaConf

    from litvision.lightning_modules.checkpoint_targets import targets_in

    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)  # cfg.model is a mapping (a _target_ and its arguments)
    return sorted(set(targets_in([value for key, value in model.items() if key != "_target_"])))


def best_checkpoint(folder: Path) -> Path:
    """The best checkpoint the run kept (else its last one)."""
    best = sorted((p for p in folder.glob("*.ckpt") if not p.name.startswith("last")), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = folder / "last.ckpt"
    if last.is_file():
        return last
    raise DataError(f"no checkpoint in {folder}: the fold's training run kept none (callbacks.model_checkpoint?)")


def _read_ids(predictions_csv: Path) -> list[str]:
    import csv

    with open(predictions_csv, newline="") as f:
        return [read_csv_cell(row["id"]) for row in csv.DictReader(f)]


def checkpoint_probabilities(
    cfg: DictConfig, data: AuditData, ckpt_path: str, split: str, out: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, given labels, probabilities) of a trained checkpoint on ``split`` (one it was not trained on)."""
    from litvision.tasks.predict import predict

    config = copy.deepcopy(cfg)
    with open_dict(config):
        config.paths.output_dir = str(out)
        config.ckpt_path = str(ckpt_path)
        config.split = split
        config.images = None
        config.predict_data.split = split
        config.logger = None
        config.callbacks = {
            "prediction_writer": {
                "_target_": "litvision.callbacks.prediction_writer.PredictionWriter",
                "output_dir": str(out),
            }
        }
    if not Path(ckpt_path).is_file():
        from litvision.utils.errors import MissingDataError

        raise MissingDataError(f"audit.ckpt_path={ckpt_path} does not exist (pass a .ckpt file)")
    summary = predict(config)
    ids = np.asarray(_read_ids(Path(summary["predictions"])), dtype=str)
    probabilities = np.load(summary["probabilities"]).astype(np.float32)
    labels = np.empty(len(ids), np.int64)
    for i, sample_id in enumerate(ids):
        split_data, position = data.locate(str(sample_id))
        labels[i] = split_data.targets[position]
    return ids, labels, probabilities
