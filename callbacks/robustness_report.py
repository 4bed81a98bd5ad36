"""The robustness section of a run: ``<run dir>/robustness.md`` (+ PNGs) and W&B ``robustness/*``.

Does the model hold up off its test set? Side by side: the clean test top-1, every shifted test
set's (``test_sets=[...]``, each with its 95% interval and the drop from clean), the corrupted
accuracy when ``robustness.json`` (``eval.py robustness=corruptions``, docs/corruptions.md) is in
the run dir, the per-group top-1 (``groups=PATH``) as bars, the classes that lose most recall
under each shift, and the effective robustness (Taori et al. 2020): the shifted accuracy minus
what the clean accuracy predicts on the line fitted, in logit space as Recht et al. plot it,
through reference runs (``reference_runs``: run dirs whose metrics.json has the same sets).
Rewritten at the end of every test (the main one, then each extra set), so it is complete
after the last; rank zero only.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from litvision.callbacks.group_metrics import GroupMetrics
from litvision.lightning_modules.metrics.collections import unique_metric_names
from litvision.utils.atomic_write import write_atomic, write_text_atomic

log = logging.getLogger("litvision")

Z95 = 1.959964  # two-sided 95% normal quantile


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion (good near 0 and 1, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def logit(p: np.ndarray | list[float] | float) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(clipped / (1 - clipped))


def effective_robustness(clean: float, shifted: float, references: list[tuple[float, float]]) -> float | None:
    """``shifted`` minus the shifted accuracy the logit-linear fit of ``references`` (clean, shifted) predicts."""
    if len(references) < 2 or len({c for c, _ in references}) < 2:
        return None
    x, y = logit([c for c, _ in references]), logit([s for _, s in references])
    slope, intercept = np.polyfit(x, y, 1)
    predicted = 1 / (1 + math.exp(-(slope * float(logit(clean)) + intercept)))
    return shifted - predicted


def reference_points(runs: list[str], name: str) -> list[tuple[float, float]]:
    """(clean, shifted) top-1 of set ``name`` in each reference run's metrics.json."""
    points = []
    for run in runs:
        path = Path(run).expanduser() / "metrics.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("robustness report: no readable %s (reference run skipped)", path)
            continue
        clean, shifted = metrics.get("test/acc_top1"), metrics.get(f"{name}/acc_top1")
        if clean is not None and shifted is not None:
            points.append((float(clean), float(shifted)))
    return points


def set_rows(epoch_results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated set (``test`` first): top-1, images, 95% interval, from its confusion matrix."""
    rows = []
    for name, results in epoch_results.items():
        if name == "val":
            continue
        confmat = results["confmat"].long()
        n, k = int(confmat.sum()), int(confmat.diag().sum())
        low, high = wilson(k, n)
        rows.append({"set": name, "n": n, "acc": k / n if n else float("nan"), "ci_low": low, "ci_high": high})
    rows.sort(key=lambda row: row["set"] != "test")
    return rows


def losing_classes(clean: Any, shifted: Any, class_names: list[str], top: int = 5) -> list[tuple[str, float, float]]:
    """(class, clean recall, shifted recall) of the classes whose recall drops most, among those in both sets."""
    clean_n, shifted_n = clean.sum(dim=1).float(), shifted.sum(dim=1).float()
    both = (clean_n > 0) & (shifted_n > 0)
    clean_r = clean.diag().float() / clean_n.clamp(min=1)
    shifted_r = shifted.diag().float() / shifted_n.clamp(min=1)
    names = unique_metric_names(class_names)
    order = sorted((i for i in range(len(names)) if both[i]), key=lambda i: float(shifted_r[i] - clean_r[i]))
    return [(names[i], float(clean_r[i]), float(shifted_r[i])) for i in order[:top]]


class RobustnessReport(L.Callback):
    """Args:
    path: the report (``<run dir>/robustness.md``); figures beside it.
    reference_runs: run dirs of other models on the same sets, for the effective-robustness fit.
    corruptions: the corruption report the corruption evaluation writes (robustness.json), if present.
    """

    def __init__(
        self,
        path: str | Path = "robustness.md",
        reference_runs: list[str] | None = None,
        corruptions: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.reference_runs = [str(r) for r in (reference_runs or [])]
        self.corruptions = Path(corruptions) if corruptions else self.path.parent / "robustness.json"
        self.summary: dict[str, Any] = {}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module)

    @rank_zero_only
    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "epoch_results", {})
        if "test" not in results:
            return
        callbacks = trainer.callbacks  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        groups = next((cb.results.get("test/") for cb in callbacks if isinstance(cb, GroupMetrics)), None)
        corrupted = self._corruptions()
        rows = set_rows(results)
        if len(rows) < 2 and not groups and corrupted is None:
            return  # a plain test: nothing to compare with
        class_names: list[str] = list(pl_module.class_names)  # type: ignore[arg-type]  # ImageClassifier's list
        self.summary = self._write(rows, results, class_names, groups, corrupted)
        self._log_wandb(trainer)

    def _corruptions(self) -> dict[str, Any] | None:
        if not self.corruptions.is_file():
            return None
        try:
            return json.loads(self.corruptions.read_text())
        except ValueError:
            log.warning("robustness report: %s is not valid JSON, corruptions left out", self.corruptions)
            return None

    def _write(self, rows, results, class_names, groups, corrupted) -> dict[str, Any]:
        clean = rows[0]["acc"]
        lines = ["# Does it hold up?", "", "## Robustness", ""]
        lines += [
            "| set | images | top-1 | 95% CI | change vs clean | effective robustness |",
            "|---|---:|---:|---|---:|---:|",
        ]
        summary: dict[str, Any] = {"sets": {}}
        for row in rows:
            er = None
            if row["set"] != "test":
                er = effective_robustness(clean, row["acc"], reference_points(self.reference_runs, row["set"]))
            change = "" if row["set"] == "test" else f"{100 * (row['acc'] - clean):+.1f} pt"
            label = "clean (test)" if row["set"] == "test" else row["set"]
            er_text = (
                "" if row["set"] == "test" else ("needs 2+ reference_runs" if er is None else f"{100 * er:+.1f} pt")
            )
            lines.append(
                f"| {label} | {row['n']} | {row['acc']:.4f} | {row['ci_low']:.4f}-{row['ci_high']:.4f} | {change} | {er_text} |"
            )
            summary["sets"][row["set"]] = {**row, "effective_robustness": er}
        if corrupted is not None:
            mean = corrupted.get("mean_corruption_acc")
            mce, rel = corrupted.get("mCE"), corrupted.get("relative_mCE")
            lines += ["", "### Corruptions (robustness.json; docs/corruptions.md)", ""]
            lines.append(
                f"Mean corruption top-1 {mean:.4f} vs clean {corrupted.get('clean', {}).get('acc', clean):.4f}"
            )
            lines.append(
                f"; mCE {'-' if mce is None else f'{mce:.3f}'}, relative mCE {'-' if rel is None else f'{rel:.3f}'}."
            )
            lines += ["", "| corruption | mean top-1 over severities |", "|---|---:|"]
            for name, severities in sorted((corrupted.get("corruptions") or {}).items()):
                accs = [float(s["acc"]) for s in severities.values()]
                lines.append(f"| {name} | {np.mean(accs):.4f} |")
            summary["mean_corruption_acc"] = mean
        lines += self._classes_section(rows, results, class_names, summary)
        lines += self._groups_section(groups, clean, summary)
        figures = self._figures(rows, corrupted, groups)
        lines += ["", *[f"![{name}]({name})" for name in figures]]
        write_text_atomic(self.path, "\n".join(lines) + "\n")
        log.info("robustness report: %s", self.path)
        return summary

    def _classes_section(self, rows, results, class_names, summary) -> list[str]:
        lines = []
        for row in rows[1:]:
            losers = losing_classes(results["test"]["confmat"], results[row["set"]]["confmat"], class_names)
            if not losers:
                continue
            summary["sets"][row["set"]]["losing_classes"] = losers
            text = ", ".join(f"{name} {c:.2f} -> {s:.2f}" for name, c, s in losers)
            lines.append(f"- **{row['set']}**: {text}")
        return ["", "### Classes that lose most under shift (recall clean -> shifted)", "", *lines] if lines else []

    def _groups_section(self, groups, clean, summary) -> list[str]:
        if not groups:
            return []
        worst = groups.get("test/worst_group_acc", float("nan"))
        low, high = groups.get("test/worst_group_acc_ci_low"), groups.get("test/worst_group_acc_ci_high")
        lines = ["", "### Groups (groups=PATH)", ""]
        lines.append(f"Worst group top-1 {worst:.4f} (95% CI {low:.4f}-{high:.4f}) vs {clean:.4f} overall.")
        lines += ["", "| group | images | top-1 | balanced acc |", "|---|---:|---:|---:|"]
        for key in sorted(k for k in groups if k.endswith("/acc_top1") and k.startswith("test/group/")):
            name = key[len("test/group/") : -len("/acc_top1")]
            n = int(groups[f"test/group/{name}/n"])
            acc = "absent" if n == 0 else f"{groups[key]:.4f}"
            balanced = "" if n == 0 else f"{groups[f'test/group/{name}/balanced_acc']:.4f}"
            lines.append(f"| {name} | {n} | {acc} | {balanced} |")
        summary["worst_group_acc"] = worst
        return lines

    def _figures(self, rows, corrupted, groups) -> list[str]:
        """PNGs beside the report: accuracy per set (clean, shifted, corrupted) and per group, with 95% intervals."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = []
        bars = [(r["set"], r["acc"], r["ci_low"], r["ci_high"]) for r in rows]
        if corrupted is not None and corrupted.get("mean_corruption_acc") is not None:
            mean = float(corrupted["mean_corruption_acc"])
            bars.append(("corrupted (mean)", mean, mean, mean))
        names.append(self._bar_png(plt, "robustness_sets.png", bars, "top-1 per test set"))
        if groups:
            group_bars = []
            for key in sorted(k for k in groups if k.endswith("/acc_top1") and k.startswith("test/group/")):
                name = key[len("test/group/") : -len("/acc_top1")]
                n = int(groups[f"test/group/{name}/n"])
                if n:
                    low, high = wilson(round(groups[key] * n), n)
                    group_bars.append((name, groups[key], low, high))
            if group_bars:
                names.append(self._bar_png(plt, "robustness_groups.png", group_bars, "test top-1 per group"))
        if len(rows) > 1:
            names.append(self._line_png(plt, rows))
        return names

    def _line_png(self, plt, rows) -> str:
        """Shifted vs clean top-1 (logit axes, as Recht et al. 2019 plot it): y = x is no drop; the
        reference runs' fit is the line effective robustness is measured from."""
        fig, ax = plt.subplots(figsize=(4.5, 4))
        grid = np.linspace(0.02, 0.99, 100)
        ax.plot(logit(grid), logit(grid), "k--", lw=1, label="y = x (no drop)")
        clean = rows[0]["acc"]
        for row in rows[1:]:
            references = reference_points(self.reference_runs, row["set"])
            (point,) = ax.plot(logit(clean), logit(row["acc"]), "o", label=f"{row['set']} (this run)")
            if references:
                x, y = logit([c for c, _ in references]), logit([s for _, s in references])
                ax.plot(x, y, ".", color=point.get_color(), alpha=0.5)
                if len(set(x.tolist())) > 1:
                    slope, intercept = np.polyfit(x, y, 1)
                    ax.plot(logit(grid), slope * logit(grid) + intercept, "-", color=point.get_color(), lw=1)
        ticks = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
        ax.set_xticks(logit(ticks), [f"{t:.0%}" for t in ticks])
        ax.set_yticks(logit(ticks), [f"{t:.0%}" for t in ticks])
        ax.set_xlabel("clean top-1 (test)")
        ax.set_ylabel("shifted top-1")
        ax.set_title("effective robustness")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = "robustness_effective.png"
        write_atomic(self.path.parent / name, lambda handle: fig.savefig(handle, format="png", dpi=100))
        plt.close(fig)
        return name

    def _bar_png(self, plt, name: str, bars, title: str) -> str:
        labels = [b[0] for b in bars]
        values = np.array([b[1] for b in bars])
        errors = np.array([[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]])
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(bars) + 2), 3.5))
        ax.bar(range(len(bars)), values, yerr=np.nan_to_num(errors), capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(bars)), labels, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("top-1")
        ax.set_title(title)
        fig.tight_layout()
        write_atomic(self.path.parent / name, lambda handle: fig.savefig(handle, format="png", dpi=100))
        plt.close(fig)
        return name

    def _log_wandb(self, trainer: L.Trainer) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or not self.summary:
            return
        import wandb

        columns: list[str | int] = ["set", "images", "top1", "ci_low", "ci_high", "effective_robustness"]
        data = [
            [name, row["n"], row["acc"], row["ci_low"], row["ci_high"], row["effective_robustness"]]
            for name, row in self.summary["sets"].items()
        ]
        payload: dict[str, Any] = {"robustness/sets": wandb.Table(columns=columns, data=data)}
        for png in ("robustness_sets.png", "robustness_groups.png", "robustness_effective.png"):
            if (self.path.parent / png).is_file():
                payload[f"robustness/{png[len('robustness_') : -4]}"] = wandb.Image(str(self.path.parent / png))
        for logger in loggers:
            logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})
