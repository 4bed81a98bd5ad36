"""Cost of ``robustness=corruptions``: 75 corrupted variants of the test images vs 75 clean passes of them.

The ``experiment=cifar10_fast`` model (airbench, its 6-view TTA, bf16 autocast on CPU) on the first
``--images`` test images of the real CIFAR-10 subset, through the same loop both ways, in one
process: the DataModule's test hook yields each image under 76 variants (clean + 15 corruptions x 5
severities, generated in ``--workers`` loader workers) and :class:`VariantEvaluator` counts top-1 per
variant; the baseline is the same loop with a hook whose 75 variants are the clean image (no
generation). Passes alternate (corrupted, clean, ...) after a warm-up; medians. The model is
untrained unless ``--ckpt`` names a checkpoint of it (training cifar10_fast on 2 busy cores is
minutes per epoch), so the accuracy table shows the plumbing, not airbench's robustness.

    python bench/robustness.py [--images 100] [--repeats 2] [--workers 2] [--ckpt PATH]

Last line: ``robustness_cost_ratio=<corrupted pass time / clean pass time>`` (target <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from litvision.datamodules.cifar10 import CIFAR10DataModule  # noqa: E402
from litvision.datamodules.transforms.corruptions.hook import CorruptionHook  # noqa: E402
from litvision.launch.resolvers import register_resolvers  # noqa: E402
from litvision.lightning_modules.variant_evaluator import VariantEvaluator  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cifar10-subset"


class CleanHook(CorruptionHook):
    """The baseline: as many variants as the corrupted pass, every one the clean image."""

    def __call__(self, image: np.ndarray, sample_id: str, variant: int) -> np.ndarray:
        return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--ckpt", default=None)
    args = parser.parse_args()

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["experiment=cifar10_fast", f"dataset.data_dir={args.data}"])
    L.seed_everything(0)
    datamodule = CIFAR10DataModule(
        data_dir=args.data,
        download=False,
        batch_size=256,
        num_workers=args.workers,
        normalize=instantiate(cfg.augmentation.normalize),
        val_fraction=0.1,
    )
    datamodule.setup("test")
    datamodule.splits.test = datamodule.splits.test.subset(np.arange(args.images))
    if args.ckpt:
        from litvision.lightning_modules.checkpoints import load_classifier

        model = load_classifier(args.ckpt, map_location="cpu")
    else:
        model = instantiate(cfg.model, class_names=datamodule.class_names)

    corrupted = CorruptionHook("all15", [1, 2, 3, 4, 5], seed=0)
    clean = CleanHook("all15", [1, 2, 3, 4, 5], seed=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )

    def timed(hook: CorruptionHook) -> tuple[float, VariantEvaluator]:
        evaluator = VariantEvaluator(model, hook.names())
        datamodule.set_test_hook(hook)
        start = time.perf_counter()
        trainer.test(evaluator, datamodule=datamodule, verbose=False)
        return time.perf_counter() - start, evaluator

    timed(clean)  # warm-up: first forward, worker start, frost textures are per worker anyway
    times: dict[str, list[float]] = {"corrupted": [], "clean": []}
    result = None
    for _ in range(args.repeats):
        seconds, result = timed(corrupted)
        times["corrupted"].append(seconds)
        seconds, _ = timed(clean)
        times["clean"].append(seconds)
    assert result is not None and result.results is not None
    correct, total = result.results
    names = corrupted.names()
    print(
        f"# {args.images} test images x {len(names)} variants, {args.workers} loader workers, model "
        f"{'from ' + args.ckpt if args.ckpt else 'untrained'}"
    )
    print(f"clean top-1: {correct[0] / total[0]:.3f}")
    print("| corruption | s1 | s2 | s3 | s4 | s5 |")
    print("|---|---:|---:|---:|---:|---:|")
    for i in range(15):
        row = [correct[1 + 5 * i + s] / total[1 + 5 * i + s] for s in range(5)]
        print(f"| {names[1 + 5 * i].split('/')[0]} | " + " | ".join(f"{a:.3f}" for a in row) + " |")
    corrupted_s, clean_s = statistics.median(times["corrupted"]), statistics.median(times["clean"])
    print(
        f"corrupted pass (76 variants): {corrupted_s:.1f} s; clean pass (76 x clean): {clean_s:.1f} s; "
        f"per image-variant {1000 * corrupted_s / total.sum():.2f} ms vs {1000 * clean_s / total.sum():.2f} ms"
    )
    print(f"robustness_cost_ratio={corrupted_s / clean_s:.2f}")


if __name__ == "__main__":
    main()
