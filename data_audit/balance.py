"""Class balance: counts per class per split, imbalance ratio, effective numbers, a bar chart, and a
warning when the test split is imbalanced (top-1 accuracy then hides weak classes: the accuracy paradox)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from litvision.data_audit.outputs import pyplot, save_figure, write_csv
from litvision.data_audit.section import Section, Table, markdown_table
from litvision.data_audit.sources import AuditData
from litvision.utils.names import escape_name

log = logging.getLogger(__name__)

# more classes than this: the chart shows sorted counts per split instead of grouped bars
MAX_BARS = 30


def imbalance_ratio(counts: np.ndarray) -> float:
    """Largest / smallest class count (inf when a class is absent)."""
    counts = np.asarray(counts, dtype=float)
    if counts.size == 0 or counts.max() == 0:
        return float("nan")
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def effective_numbers(counts: np.ndarray, beta: float) -> np.ndarray:
    """Effective number of samples per class, (1 - beta^n) / (1 - beta) (Cui et al., CVPR 2019):
    what n samples are worth once their overlap is discounted; class-balanced losses weight by its inverse."""
    counts = np.asarray(counts, dtype=float)
    return (1.0 - np.power(beta, counts)) / (1.0 - beta)


def effective_classes(counts: np.ndarray) -> float:
    """exp(entropy of the class distribution): the number of equally frequent classes with the same
    entropy (= number of classes when balanced)."""
    counts = np.asarray(counts, dtype=float)
    p = counts[counts > 0] / counts.sum() if counts.sum() else np.zeros(0)
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def run_balance(data: AuditData, out_dir: Path, beta: float = 0.999, max_test_imbalance: float = 1.5) -> Section:
    section = Section("balance", "Class balance")
    num_classes = len(data.class_names)
    counts: dict[str, np.ndarray] = {
        f"source {name}": np.bincount(split.targets, minlength=num_classes) for name, split in data.splits.items()
    }
    counts.update({name: np.bincount(t, minlength=num_classes) for name, t in data.our_targets().items()})

    rows = [
        [name, c, int(n)]
        for name, per_class in counts.items()
        for c, n in zip(data.class_names, per_class, strict=True)
    ]
    section.files.append(write_csv(out_dir / "balance.csv", ["split", "class", "count"], rows))

    summary = []
    for name, per_class in counts.items():
        effective = effective_numbers(per_class, beta)
        ratio = imbalance_ratio(per_class)
        summary.append(
            [
                name,
                int(per_class.sum()),
                int(per_class.min()),
                int(per_class.max()),
                ratio,
                float(effective.min()),
                float(effective.max()),
                effective_classes(per_class),
            ]
        )
        key = name.replace(" ", "_")
        section.metrics[f"balance/{key}/imbalance_ratio"] = ratio
        section.metrics[f"balance/{key}/effective_classes"] = effective_classes(per_class)
    columns = [
        "split",
        "images",
        "smallest class",
        "largest class",
        "imbalance ratio",
        f"effective n min (beta={beta})",
        "effective n max",
        "effective classes",
    ]
    section.markdown += [
        f"{num_classes} classes. Source splits are the files the dataset ships; train / val / test are the "
        "splits a run with this config uses (after the val hold-out, long-tail cut and exclude_ids). "
        "Imbalance ratio = largest / smallest class; effective number of samples = (1 - beta^n) / (1 - beta) "
        "(Cui et al. 2019); effective classes = exp(entropy of the class shares).",
        "",
        *markdown_table(columns, summary),
        "",
    ]
    section.tables.append(Table("balance_summary", columns, summary))
    section.tables.append(
        Table(
            "balance_counts",
            ["class", *counts],
            [[name, *(int(per_class[c]) for per_class in counts.values())] for c, name in enumerate(data.class_names)],
        )
    )

    test_ratio = imbalance_ratio(counts["test"])
    section.metrics["balance/test_imbalance_warning"] = float(not test_ratio <= max_test_imbalance)
    if not test_ratio <= max_test_imbalance:
        rarest = escape_name(data.class_names[int(np.argmin(counts["test"]))])
        warning = (
            f"The test split is imbalanced (largest / smallest class = {test_ratio:.3g} > "
            f"audit.balance.max_test_imbalance={max_test_imbalance}; rarest: {rarest}, {int(counts['test'].min())} images): "
            "top-1 accuracy is dominated by the large classes and can stay high while a rare class fails "
            "(accuracy paradox). Read test/balanced_acc and test/recall/<class>."
        )
        section.warnings.append(warning)
        log.warning("audit: %s", warning)

    section.figures.append(_chart(counts, [escape_name(name) for name in data.class_names], out_dir / "balance.png"))
    section.markdown.append("![class counts](balance.png)")
    return section


def _chart(counts: dict[str, np.ndarray], class_names: list[str], path: Path) -> Path:
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(max(6.0, 0.55 * min(len(class_names), MAX_BARS) * len(counts) / 2), 4))
    if len(class_names) <= MAX_BARS:
        width = 0.8 / len(counts)
        x = np.arange(len(class_names))
        for k, (name, per_class) in enumerate(counts.items()):
            ax.bar(x + (k - (len(counts) - 1) / 2) * width, per_class, width, label=name)
        ax.set_xticks(x, class_names, rotation=45, ha="right")
    else:
        for name, per_class in counts.items():
            ax.plot(np.sort(per_class)[::-1], label=name)
        ax.set_xlabel("classes, largest first")
    ax.set_ylabel("images")
    ax.set_title("images per class")
    ax.legend(fontsize=8)
    return save_figure(figure, path)
