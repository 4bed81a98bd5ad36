"""What per-group metrics (``groups=PATH``) add to a validation epoch, on ``experiment=cifar10_cpu``.

Two identical DataModules and one model; the same validation epoch (``trainer.validate``) runs
alternately (ABBA order) with the group metrics callback (a group file with two columns, 2 + 10 groups, for
every validation image: the codes ride in every batch, hits are counted per group and class, the
bootstrap intervals are drawn) and without it, in one process, so both share whatever the
machine is doing. The first round of each is a warm-up.

    python bench/group_overhead.py [--rounds 6] [--data ../shared/data/cifar10-subset] [--val-fraction 0.2]

Last line: ``group_overhead_ratio=<validation epoch with groups / without>`` (median over rounds).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from litvision.callbacks.group_metrics import GroupMetrics  # noqa: E402
from litvision.datamodules.readers.group_file import write_group_file  # noqa: E402
from litvision.launch.resolvers import register_resolvers  # noqa: E402

register_resolvers()


def trainer(callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--data", default="../shared/data/cifar10-subset")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    overrides = [
        "experiment=cifar10_cpu",
        f"dataset.data_dir={args.data}",
        "dataset.download=false",
        f"dataset.val_fraction={args.val_fraction}",
        "dataset.persistent_workers=false",
        # in-process loading: no worker start-up in the timings (the same for both, but noisy here)
        "dataset.num_workers=0",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=/tmp", "hydra.run.dir=/tmp"])
    plain, grouped = instantiate(cfg.dataset), instantiate(cfg.dataset)
    for dm in (plain, grouped):
        dm.prepare_data()
        dm.setup("validate")
    ids = plain.splits.val.ids.tolist()
    with tempfile.TemporaryDirectory() as tmp:
        groups = Path(tmp) / "groups.csv"
        write_group_file(groups, [(i, str(n % 2), f"b{n % 10}") for n, i in enumerate(ids)], ("parity", "bucket"))
        model = instantiate(cfg.model, num_classes=plain.num_classes, class_names=plain.class_names)
        times: dict[str, list[float]] = {"plain": [], "groups": []}
        for round_ in range(args.rounds + 1):
            pair = [("plain", plain, []), ("groups", grouped, [GroupMetrics(str(groups))])]
            for name, dm, callbacks in pair if round_ % 2 else pair[::-1]:  # ABBA: a drift of the machine cancels
                run = trainer(callbacks)
                start = time.perf_counter()
                run.validate(model, datamodule=dm, verbose=False)
                times[name].append(time.perf_counter() - start)
        worst = next(cb for _, _, cbs in pair for cb in cbs).results["val/"]["val/worst_group_acc"]
    plain_t, group_t = times["plain"][1:], times["groups"][1:]
    ratios = [g / p for g, p in zip(group_t, plain_t, strict=True)]
    print(f"validation images: {len(ids)} (val_fraction={args.val_fraction}), rounds: {args.rounds} (+1 warm-up)")
    print(
        f"validation epoch without groups: median {statistics.median(plain_t):.3f} s  {[round(t, 3) for t in plain_t]}"
    )
    print(
        f"validation epoch with groups:    median {statistics.median(group_t):.3f} s  {[round(t, 3) for t in group_t]}"
    )
    print(f"val/worst_group_acc of the untrained model: {worst:.4f} (12 groups, 1000 bootstrap draws)")
    print(f"group_overhead_ratio={statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
