"""What the corruption pass reports: ``robustness.json``, the ``report.md`` section, the heatmap, W&B, metrics.json keys.

From the per-variant (correct, total) counts (:class:`~litvision.lightning_modules.variant_evaluator.VariantEvaluator`):
top-1 per corruption and severity with its Wilson 95% interval, the mean corruption accuracy
(over every corruption x severity evaluated), the drop from clean and, against reference errors,
the corruption error ``CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}`` and the relative one
``sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``, averaged over corruptions into
mCE and relative mCE (Hendrycks & Dietterich 2019, section 4). The reference is another run's
``robustness.json`` (``robustness.reference=PATH``, every evaluated variant must be in it) or, for
1,000-class models, AlexNet's published ImageNet-C errors (known per corruption averaged over
severities 1-5, so only a pass over all five is compared with them).

``robustness.json`` keys the run's robustness report reads (callbacks/robustness_report.py):
``clean.acc``, ``corruptions.<name>.<severity>.acc``, ``mean_corruption_acc``, ``mCE``, ``relative_mCE``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from litvision.callbacks.robustness_report import wilson
from litvision.datamodules.transforms.corruptions.hook import CLEAN
from litvision.datamodules.transforms.corruptions.tables import ALEXNET_CLEAN_ERR, ALEXNET_ERR, SEVERITIES
from litvision.utils.atomic_write import write_atomic, write_json_atomic, write_text_atomic
from litvision.utils.errors import ConfigError, MissingDataError

log = logging.getLogger("litvision")

SECTION_START = "<!-- corruptions: start (eval.py robustness=corruptions) -->"
SECTION_END = "<!-- corruptions: end -->"
HEATMAP = "robustness_heatmap.png"


class Reference:
    """Reference errors for mCE: per (corruption, severity), or per corruption averaged over 1-5 (AlexNet)."""

    def __init__(self, name: str, clean_err: float, errors: dict[str, dict[int, float]] | dict[str, float]) -> None:
        self.name = name
        self.clean_err = clean_err
        self.errors = errors

    @classmethod
    def from_file(cls, path: str | Path, variants: Sequence[tuple[str, int]]) -> Reference:
        """A reference run's robustness.json, refused in one line unless it has every variant of this pass."""
        path = Path(path).expanduser()
        what = f"robustness.reference={path}"
        if not path.is_file():
            raise MissingDataError(
                f"{what}: no such file (a robustness.json written by eval.py robustness=corruptions)"
            )
        try:
            data = json.loads(path.read_text())
            clean = float(data["clean"]["acc"])
            table = data["corruptions"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{what}: not a robustness.json of eval.py robustness=corruptions ({type(e).__name__}: {e})"
            ) from None
        errors: dict[str, dict[int, float]] = {}
        for name, severity in variants:
            try:
                errors.setdefault(name, {})[severity] = 1.0 - float(table[name][str(severity)]["acc"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"{what}: has no {name} at severity {severity}; evaluate the reference with the same "
                    "robustness.corruptions and robustness.severities"
                ) from None
        return cls(str(path), 1.0 - clean, errors)

    @classmethod
    def alexnet(cls) -> Reference:
        return cls("AlexNet (Hendrycks & Dietterich 2019)", ALEXNET_CLEAN_ERR, dict(ALEXNET_ERR))

    def sums(self, name: str, severities: Sequence[int]) -> tuple[float, float] | None:
        """(sum of reference errors, sum of reference errors minus clean) over ``severities``, or None."""
        errors = self.errors.get(name)
        if errors is None:
            return None
        if isinstance(errors, dict):
            values = [errors[s] for s in severities]
        else:  # a mean over severities 1-5: comparable only with all five
            if sorted(severities) != list(SEVERITIES):
                return None
            values = [float(errors)] * len(SEVERITIES)
        return sum(values), sum(v - self.clean_err for v in values)


def summarise(
    names: Sequence[str],
    correct: np.ndarray,
    total: np.ndarray,
    reference: Reference | None,
    seed: int,
) -> dict[str, Any]:
    """robustness.json's content from the counts of variants ``names`` (``clean``, ``<corruption>/<severity>``)."""

    def entry(k: int, n: int) -> dict[str, Any]:
        low, high = wilson(k, n)
        return {"acc": k / n if n else float("nan"), "n": n, "correct": k, "ci_low": low, "ci_high": high}

    by_name = dict(zip(names, zip(correct.tolist(), total.tolist(), strict=True), strict=True))
    clean = entry(*by_name[CLEAN])
    corruptions: dict[str, dict[str, Any]] = {}
    for variant, (k, n) in by_name.items():
        if variant == CLEAN:
            continue
        name, severity = variant.rsplit("/", 1)
        corruptions.setdefault(name, {})[severity] = {**entry(k, n), "drop": clean["acc"] - (k / n if n else math.nan)}
    accs = [s["acc"] for severities in corruptions.values() for s in severities.values()]
    mean = float(np.mean(accs)) if accs else float("nan")
    summary: dict[str, Any] = {
        "clean": clean,
        "corruptions": corruptions,
        "corruption_mean_acc": {
            name: float(np.mean([s["acc"] for s in sev.values()])) for name, sev in corruptions.items()
        },
        "mean_corruption_acc": mean,
        "drop": clean["acc"] - mean,
        "seed": seed,
        "reference": None if reference is None else reference.name,
        "CE": {},
        "relative_CE": {},
        "mCE": None,
        "relative_mCE": None,
    }
    if reference is None:
        return summary
    clean_err = 1.0 - clean["acc"]
    for name, severities in corruptions.items():
        levels = sorted(int(s) for s in severities)
        sums = reference.sums(name, levels)
        if sums is None:
            continue
        errors = [1.0 - severities[str(s)]["acc"] for s in levels]
        summary["CE"][name] = sum(errors) / sums[0] if sums[0] > 0 else None
        relative = sum(e - clean_err for e in errors)
        summary["relative_CE"][name] = relative / sums[1] if sums[1] > 0 else None
    if summary["CE"] and len(summary["CE"]) == len(corruptions):
        ce = [v for v in summary["CE"].values() if v is not None]
        rel = [v for v in summary["relative_CE"].values() if v is not None]
        summary["mCE"] = float(np.mean(ce)) if len(ce) == len(corruptions) else None
        summary["relative_mCE"] = float(np.mean(rel)) if len(rel) == len(corruptions) else None
    else:
        log.warning(
            "robustness: mCE left out: %s has no errors for every corruption and severity evaluated "
            "(AlexNet's are known only over all five severities)",
            reference.name,
        )
    return summary


def flat_metrics(summary: dict[str, Any], prefix: str = "corruptions/") -> dict[str, float | None]:
    """The summary's headline figures as metrics.json/W&B keys (``corruptions/mean_acc``, ``corruptions/mCE``, ...)."""
    flat: dict[str, float | None] = {
        f"{prefix}clean/acc_top1": summary["clean"]["acc"],
        f"{prefix}mean_acc": summary["mean_corruption_acc"],
        f"{prefix}drop": summary["drop"],
        f"{prefix}mCE": summary["mCE"],
        f"{prefix}relative_mCE": summary["relative_mCE"],
    }
    for name, severities in summary["corruptions"].items():
        flat[f"{prefix}{name}/mean_acc"] = summary["corruption_mean_acc"][name]
        for severity, row in severities.items():
            flat[f"{prefix}{name}/{severity}/acc_top1"] = row["acc"]
            flat[f"{prefix}{name}/{severity}/ci_low"] = row["ci_low"]
            flat[f"{prefix}{name}/{severity}/ci_high"] = row["ci_high"]
        if summary["CE"].get(name) is not None:
            flat[f"{prefix}{name}/CE"] = summary["CE"][name]
    return flat


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def section(summary: dict[str, Any]) -> str:
    """The ``## Corruptions`` section of report.md."""
    clean = summary["clean"]
    severities = sorted({s for sev in summary["corruptions"].values() for s in sev}, key=int)
    lines = [
        SECTION_START,
        "## Corruptions",
        "",
        f"ImageNet-C's corruptions applied to the {clean['n']} test images (docs/corruptions.md; seed {summary['seed']}). "
        f"Clean top-1 {clean['acc']:.4f} ({clean['ci_low']:.4f}-{clean['ci_high']:.4f}), mean corruption top-1 "
        f"{summary['mean_corruption_acc']:.4f}, drop {100 * summary['drop']:.1f} pt; "
        f"mCE {_fmt(summary['mCE'])}, relative mCE {_fmt(summary['relative_mCE'])}"
        + (
            f" (reference: {summary['reference']})."
            if summary["reference"]
            else " (no reference: robustness.reference=PATH)."
        ),
        "",
        "Top-1 per severity with its 95% (Wilson) interval:",
        "",
        "| corruption | " + " | ".join(f"severity {s}" for s in severities) + " | mean | CE |",
        "|---|" + "---:|" * (len(severities) + 2),
    ]
    for name, rows in summary["corruptions"].items():
        cells = [
            f"{rows[s]['acc']:.3f} ({rows[s]['ci_low']:.3f}-{rows[s]['ci_high']:.3f})" if s in rows else ""
            for s in severities
        ]
        mean = summary["corruption_mean_acc"][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {_fmt(summary['CE'].get(name))} |")
    lines += ["", f"![{HEATMAP}]({HEATMAP})", SECTION_END]
    return "\n".join(lines)


def write_report_section(path: Path, text: str) -> None:
    """Put ``text`` into ``path`` (report.md), replacing the previous corruption section if there is one."""
    old = path.read_text() if path.is_file() else ""
    if SECTION_START in old and SECTION_END in old:
        head, rest = old.split(SECTION_START, 1)
        new = head + text + rest.split(SECTION_END, 1)[1]
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "# Run report\n\n") + text + "\n"
    write_text_atomic(path, new)


def heatmap(summary: dict[str, Any], path: Path) -> None:
    """Corruption x severity top-1 (clean as its own column), annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["corruptions"])
    severities = sorted({s for sev in summary["corruptions"].values() for s in sev}, key=int)
    grid = np.array(
        [
            [summary["clean"]["acc"]] + [summary["corruptions"][n].get(s, {}).get("acc", np.nan) for s in severities]
            for n in names
        ]
    )
    fig, ax = plt.subplots(figsize=(1.1 * len(severities) + 3.5, 0.38 * len(names) + 1.6))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
            )
    ax.set_xticks(range(len(severities) + 1), ["clean", *severities])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("severity")
    ax.set_title(f"top-1 under corruption (mean {summary['mean_corruption_acc']:.3f}, mCE {_fmt(summary['mCE'])})")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    plt.close(fig)


def write_outputs(summary: dict[str, Any], out_dir: Path) -> None:
    """robustness.json, the heatmap and the report.md section, in ``out_dir`` (rank zero calls this)."""
    write_json_atomic(out_dir / "robustness.json", summary)
    heatmap(summary, out_dir / HEATMAP)
    write_report_section(out_dir / "report.md", section(summary))
    log.info("corruptions: %s, %s and report.md in %s", "robustness.json", HEATMAP, out_dir)


def log_wandb(trainer: L.Trainer, summary: dict[str, Any], out_dir: Path) -> None:
    """The heatmap, a corruption x severity table and the headline figures through the run's WandbLoggers."""
    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if not loggers:
        return
    import wandb

    columns: list[str | int] = ["corruption", "severity", "images", "top1", "ci_low", "ci_high", "drop"]
    data = [
        [name, int(s), row["n"], row["acc"], row["ci_low"], row["ci_high"], row["drop"]]
        for name, rows in summary["corruptions"].items()
        for s, row in rows.items()
    ]
    payload: dict[str, Any] = {"corruptions/table": wandb.Table(columns=columns, data=data)}
    if (out_dir / HEATMAP).is_file():
        payload["corruptions/heatmap"] = wandb.Image(str(out_dir / HEATMAP))
    payload.update({k: v for k, v in flat_metrics(summary).items() if v is not None})
    for logger in loggers:
        logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})
