"""The audit task: class balance, image health, duplicates/leakage and label errors of a dataset's
source splits, written to ``<run dir>/audit/`` (report.md, figures, CSVs) and to the run's loggers."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from litvision.data_audit.features import FeatureStore
from litvision.data_audit.sources import AuditData, load_audit_data
from litvision.tasks.audit_features import check_feature_options, feature_store, method_of, weights_source
from litvision.utils.atomic_write import write_json_atomic
from litvision.utils.errors import ConfigError
from litvision.utils.optional import require

log = logging.getLogger("litvision")

SECTIONS = ("balance", "health", "duplicates", "label_errors")
# the `audit` extra's packages each section imports: checked before any data is read or trained on
SECTION_MODULES = {"duplicates": ("faiss",), "label_errors": ("cleanlab", "sklearn")}


def audit(cfg: DictConfig) -> dict[str, Any]:
    """Run the sections in ``audit.sections``; return the summary numbers (also in audit/summary.json).

    With ``audit.fold=k`` only fold k of the label-error cross-fit is trained and predicted (a job
    of a multirun); a later run without ``audit.fold`` and the same ``audit.folds_dir`` merges them.
    """
    options = cfg.audit
    sections = chosen_sections(options.sections)
    for name in sections:
        for module in SECTION_MODULES.get(name, ()):
            require(module, "audit", f"audit section {name}")
    out_dir = Path(cfg.paths.output_dir) / "audit"
    check_feature_options(cfg)
    _check_fold_options(cfg, options)
    data = load_audit_data(instantiate(cfg.dataset))
    if options.get("fold") is not None:
        return run_single_fold(cfg, data, int(options.fold))
    # method=features: one frozen backbone, each image embedded once for both sections that use it
    uses_features = method_of(cfg) == "features" and {"duplicates", "label_errors"} & set(sections)
    store = feature_store(cfg, data) if uses_features else None

    results = []
    pairs, suspects = [], []
    scans = {}
    if {"health", "duplicates"} & set(sections):
        from litvision.data_audit.scan import scan_split

        size = int(options.duplicates.thumbnail_size)
        scans = {name: scan_split(split, size, int(options.num_workers)) for name, split in data.splits.items()}
    for name in sections:
        log.info("audit: section %s", name)
        if name == "balance":
            from litvision.data_audit.balance import run_balance

            results.append(
                run_balance(data, out_dir, float(options.balance.beta), float(options.balance.max_test_imbalance))
            )
        elif name == "health":
            from litvision.data_audit.health import run_health

            results.append(run_health(data, scans, out_dir, int(options.health.bins)))
        elif name == "duplicates":
            section, pairs = run_duplicate_section(cfg, data, scans, out_dir, store)
            results.append(section)
        elif name == "label_errors":
            section, suspects = run_label_error_section(cfg, data, out_dir, store)
            results.append(section)

    exclusions = None
    if options.write_exclusions:
        from litvision.data_audit.clean_split import FILE_NAME, exclusion_groups, write_exclusions

        if not {"duplicates", "label_errors"} & set(sections):
            raise ConfigError(
                "audit.write_exclusions=true needs the duplicates or label_errors section in audit.sections"
            )
        exclusions = write_exclusions(out_dir / FILE_NAME, exclusion_groups(data, pairs, suspects))
        log.info("audit: wrote %s (train on the clean split with dataset.exclude_ids=%s)", exclusions, exclusions)

    from litvision.data_audit.report import write_report
    from litvision.tasks.audit_loggers import finite_metrics, log_findings

    report = write_report(out_dir / "report.md", data, results, exclusions)
    metrics = finite_metrics(results)
    write_json_atomic(out_dir / "summary.json", metrics)
    log_findings(cfg, results, report)
    for warning in (w for section in results for w in section.warnings):
        log.warning("audit: %s", warning)
    log.info("audit: report written to %s", report)
    return metrics


def chosen_sections(sections: Any) -> list[str]:
    if isinstance(sections, str):
        sections = [sections]
    if not isinstance(sections, (list, ListConfig)) or not sections:
        raise ConfigError(f"audit.sections={sections}: give a list, e.g. audit.sections=[balance,duplicates]")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"audit.sections: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    return list(dict.fromkeys(sections))


def _check_fold_options(cfg: DictConfig, options: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from litvision.tasks.audit_cross_fit import single_device

    fold = options.get("fold")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int)):
        raise ConfigError(f"audit.fold={fold}: an integer fold number (0..audit.label_errors.folds-1), or null for all")
    if fold is not None and options.get("ckpt_path"):
        raise ConfigError("audit.fold and audit.ckpt_path exclude each other: a checkpoint needs no cross-fitting")
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if (
        fold is not None
        and multirun
        and Path(str(options.folds_dir)).resolve().is_relative_to(Path(cfg.paths.output_dir).resolve())
    ):
        raise ConfigError(
            "audit.fold in a multirun: every job has its own run dir, so the folds must go to one shared folder: "
            "add audit.folds_dir=DIR (then merge with: python audit.py audit.folds_dir=DIR ...)"
        )
    crossfit = (
        "label_errors" in chosen_sections(options.sections)
        and not options.get("ckpt_path")
        and fold is None
        and method_of(cfg) == "cross_fit"
    )
    if crossfit and not single_device(cfg.trainer):
        raise ConfigError(
            "the audit trains its folds one after the other on one device (trainer.devices=1); to use more devices, "
            "run the folds as jobs: python audit.py -m audit.fold=0,1,2 audit.folds_dir=DIR trainer=... , then merge "
            "with python audit.py audit.folds_dir=DIR"
        )


def _cross_fit(cfg: DictConfig, data: AuditData):
    from litvision.tasks.audit_cross_fit import CrossFit

    options = cfg.audit.label_errors
    epochs = options.get("epochs")
    return CrossFit(
        cfg,
        data,
        cfg.audit.folds_dir,
        int(options.folds),
        None if epochs is None else int(epochs),
        int(options.fold_seed),
    )


def run_single_fold(cfg: DictConfig, data: AuditData, fold: int) -> dict[str, Any]:
    crossfit = _cross_fit(cfg, data)
    if crossfit.done(fold):
        log.info("audit: fold %d already done in %s", fold, crossfit.fold_dir(fold))
    else:
        crossfit.run_fold(fold)
    missing = crossfit.missing()
    log.info(
        "audit: fold %d ready; %s",
        fold,
        f"folds {missing} still to run"
        if missing
        else f"all folds done: merge with python audit.py audit.folds_dir={crossfit.folds_dir} (same dataset and recipe)",
    )
    return {}


def run_label_error_section(cfg: DictConfig, data: AuditData, out_dir: Path, store: FeatureStore | None = None):
    from litvision.data_audit.label_errors import run_label_errors
    from litvision.tasks.audit_cross_fit import checkpoint_probabilities

    options = cfg.audit.label_errors
    ckpt_path = cfg.audit.get("ckpt_path")
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if store is not None:
        from litvision.tasks.audit_features import feature_probabilities

        ids, labels, probabilities, source, timings = feature_probabilities(cfg, data, store)
    elif ckpt_path:
        split = str(options.split)
        ids, labels, probabilities = checkpoint_probabilities(
            cfg, data, ckpt_path, split, out_dir / "checkpoint_predictions"
        )
        source = f"checkpoint `{ckpt_path}` on split `{split}`"
    else:
        crossfit = _cross_fit(cfg, data)
        crossfit.run()
        ids, labels, probabilities = crossfit.ids, crossfit.targets, crossfit.collect()
        epochs = crossfit.epochs if crossfit.epochs is not None else cfg.trainer.get("max_epochs")
        source = (
            f"{crossfit.folds}-fold cross-fitting of source split `{crossfit.split.name}` ({epochs} epochs per fold, "
            f"folds in `{crossfit.folds_dir}`)"
        )
    seconds = time.perf_counter() - start
    num_issues = options.num_issues
    num_issues = num_issues if isinstance(num_issues, str) else int(num_issues)
    section, suspects = run_label_errors(
        data, ids, labels, probabilities, out_dir, source, str(options.rank_by), num_issues, int(cfg.audit.max_rows)
    )
    method = method_of(cfg) if store is not None or not ckpt_path else "checkpoint"
    section.metrics["label_errors/probability_seconds"] = seconds
    section.metrics.update({f"label_errors/{name}": value for name, value in timings.items()})
    parts = [f"{name.removesuffix('_seconds')} {value:.1f} s" for name, value in timings.items()]
    section.markdown[:0] = [
        f"Method: `{method}`; out-of-sample probabilities in {seconds:.1f} s wall"
        + (f" ({', '.join(parts)})" if parts else "")
        + ".",
        "",
    ]
    if method == "cross_fit" and weights_source(cfg):
        log.info(
            "audit: model.backbone.weights is set: audit.label_errors.method=features would take the probabilities "
            "from its frozen features in seconds instead of training folds (docs/data-audit.md)"
        )
    return section, suspects


def run_duplicate_section(
    cfg: DictConfig, data: AuditData, scans: dict, out_dir: Path, store: FeatureStore | None = None
):
    from litvision.data_audit.duplicates import NearDuplicateSearch, run_duplicates
    from litvision.data_audit.features import FeatureConfirmation

    options = cfg.audit.duplicates
    search = NearDuplicateSearch(
        max_shift=int(options.max_shift),
        feature_size=int(options.feature_size),
        neighbors=int(options.neighbors),
        candidate_distance=float(options.candidate_distance),
        max_distance=float(options.max_distance),
        index=str(options.index),
    )
    check = None
    if cfg.audit.get("ckpt_path"):
        from litvision.data_audit.embeddings import EmbeddingCheck
        from litvision.tasks.build import checkpoint_trust

        check = EmbeddingCheck(
            cfg.audit.ckpt_path, data, float(options.embedding_max_distance), checkpoint_trust(cfg), store=store
        )
    confirmation = None if store is None else FeatureConfirmation(store, float(options.feature_min_similarity))
    return run_duplicates(data, scans, out_dir, search, int(cfg.audit.max_rows), check, confirmation)
