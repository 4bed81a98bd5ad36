"""File index and samplers at full ILSVRC-2012 size, on a synthetic tree of empty files.

Builds, in a temp dir, the shape of ImageNet's train/val: 1,000 class folders (the real wnids)
holding 1,281,167 empty ``<wnid>_<number>.JPEG`` files (1,281 or 1,282 per class), and a flat
``val/`` of 50,000 empty ``ILSVRC2012_val_NNNNNNNN.JPEG`` with Kaggle's ``LOC_val_solution.csv``.
Files are empty because what is measured never opens them: listing, caching and sampling only.
Then, in ONE process, with the ImageNet DataModule (``dataset=imagenet``):

  first scan       prepare_data() with no index cache: lists the 1,001 folders (the tree was
                   just built, so its directory entries are in the page cache: "warm"); the
                   baseline beside it is a bare os.scandir of the same folders
  cached start-up  a new DataModule's prepare_data() with the cache written by the first (median
                   of 3 new DataModules): the index is loaded from .npz after one stat per
                   folder; setup() (splits, datasets) is reported beside it
  index memory     bytes of the index arrays (paths + labels, train + val), and the peak of
                   Python allocations (tracemalloc) while the cached index loads
  sampler          one epoch of rank 0 of 8 for sampler=class_balanced and sampler=class_aware
                   over the 1.28M training labels (median of --epochs), beside torch's
                   DistributedSampler (plain shuffling) for scale

Times are taken as wall clock and as CPU time of this process (user + system; the code timed
is single-threaded, so on a quiet machine the two agree). A regression guard compares each
figure with the reference measured when issue 11 was filed (first scan 2.9 s, cached start-up
0.07 s, ~56 MB, 0.44 s per epoch per rank) and exits with status 1 when one is worse by more
than --tolerance (default 2x). The guard uses CPU time: on a shared machine other tenants
stretch wall-clock time several-fold but hardly the CPU time of a single-threaded loop; memory
is deterministic and gets 1.2x. Last line:
``index_scale_guard=ok|REGRESSION first_scan_s=... cached_startup_s=... index_mb=... sampler_s_per_epoch_rank=...``.

Multi-node DDP on a shared filesystem (what each process does with this tree): global rank 0
alone lists the tree and writes the index cache, in ``prepare_data`` (``prepare_data_per_node``
is False for the file DataModules); every other rank receives rank 0's indices by one broadcast
in ``setup`` (~50 MB, see ``index_mb``) and neither lists the tree nor reads the cache. So one
listing per job, whatever the number of nodes, also when the cache cannot be written.

    python bench/imagenet_index_scale.py [--dir /tmp] [--epochs 5] [--keep | --tree KEPT_TREE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DistributedSampler  # noqa: E402

from litvision.datamodules.imagenet import ImageNetDataModule  # noqa: E402
from litvision.datamodules.readers.imagenet_index import shipped_class_names  # noqa: E402
from litvision.datamodules.sampling.samplers import ClassAwareSampler, ClassBalancedSampler  # noqa: E402

TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train
VAL_IMAGES = 50_000
RANKS = 8
# issue 11, measured on the code of the day with such a tree
REFERENCE = {"first_scan_s": 2.9, "cached_startup_s": 0.07, "index_mb": 56.0, "sampler_s_per_epoch_rank": 0.44}


def build_tree(root: Path) -> tuple[int, float]:
    """The synthetic ILSVRC-2012 tree; returns (files created, seconds)."""
    started = time.perf_counter()
    wnids = sorted(shipped_class_names())
    per_class = [TRAIN_IMAGES // len(wnids) + (c < TRAIN_IMAGES % len(wnids)) for c in range(len(wnids))]
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for wnid, n in zip(wnids, per_class, strict=True):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for k in range(n):
            os.close(os.open(folder / f"{wnid}_{10000 + k}.JPEG", flags, 0o644))
    val = root / "val"
    val.mkdir()
    rng = np.random.default_rng(0)
    labels = rng.integers(len(wnids), size=VAL_IMAGES)
    rows = []
    for i, label in enumerate(labels, start=1):
        stem = f"ILSVRC2012_val_{i:08d}"
        os.close(os.open(val / f"{stem}.JPEG", flags, 0o644))
        rows.append(f"{stem},{wnids[label]} 10 20 200 220")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    # a tree nobody is changing (the index cache skips trees modified in the last 2 s)
    when = time.time() - 3600
    for folder in [root / "train" / w for w in wnids] + [root / "train", val, root / "LOC_val_solution.csv", root]:
        os.utime(folder, (when, when))
    return sum(per_class) + VAL_IMAGES, time.perf_counter() - started


class Timer:
    """Wall and CPU seconds (user + system of this process) of a ``with`` block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bare_listing(root: Path) -> Timer:
    """os.scandir of every folder of the tree: the floor for any index build."""
    with Timer() as timer:
        count = 0
        for folder in [*(root / "train").iterdir(), root / "val"]:
            with os.scandir(folder) as entries:
                count += sum(1 for _ in entries)
    assert count == TRAIN_IMAGES + VAL_IMAGES, count
    return timer


def datamodule(root: Path, cache: Path) -> ImageNetDataModule:
    return ImageNetDataModule(
        str(root), val_split="val", test_split="val", index_cache_dir=str(cache), progress=False, num_workers=0
    )


def sampler_epoch_seconds(sampler, epochs: int) -> Timer:
    """Median wall and CPU seconds of one epoch of ``sampler`` (its whole index list)."""
    walls, cpus = [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        with Timer() as timer:
            indices = list(iter(sampler))
        assert len(indices) == len(sampler)
        walls.append(timer.wall)
        cpus.append(timer.cpu)
    timer.wall, timer.cpu = statistics.median(walls), statistics.median(cpus)
    return timer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to build the tree (needs ~1.4M inodes)")
    parser.add_argument("--epochs", type=int, default=5, help="sampler epochs timed (median)")
    parser.add_argument("--tolerance", type=float, default=2.0, help="allowed slow-down of times vs the reference")
    parser.add_argument("--memory-tolerance", type=float, default=1.2)
    parser.add_argument("--keep", action="store_true", help="keep the tree (default: deleted at the end)")
    parser.add_argument("--tree", type=Path, help="reuse a tree kept by an earlier --keep run (its imagenet/ folder)")
    args = parser.parse_args()

    usage = shutil.disk_usage(args.dir)
    stat = os.statvfs(args.dir)
    print(f"# {args.dir}: {usage.free / 1e9:.1f} GB free, {stat.f_favail:,} inodes free")
    if stat.f_favail < 1.5 * (TRAIN_IMAGES + VAL_IMAGES) or usage.free < 2e9:
        print("not enough inodes/space for the synthetic tree; pass --dir elsewhere", file=sys.stderr)
        return 2
    print(
        f"# machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    work = Path(tempfile.mkdtemp(prefix="litvision-index-scale-", dir=args.dir))
    try:
        cache = work / "index-cache"
        if args.tree:
            root = args.tree
            print(f"reusing the tree {root}")
        else:
            root = work / "imagenet"
            created, build_s = build_tree(root)
            print(f"built {created:,} empty files in {build_s:.1f} s under {root}")

        listing = bare_listing(root)  # also makes sure the directory entries are cached (warm)
        dm = datamodule(root, cache)
        with Timer() as first_scan:
            dm.prepare_data()
        assert len(dm.index("train")) == TRAIN_IMAGES and len(dm.index("val")) == VAL_IMAGES
        assert len(list(cache.glob("index-*.npz"))) == 2, "the index was not cached"
        index_mb = sum(i.paths.nbytes + i.labels.nbytes for i in (dm.index("train"), dm.index("val"))) / 1e6

        loads = []
        for _ in range(3):  # a new DataModule each time, as every start has; the median is reported
            cached = datamodule(root, cache)
            with Timer() as timer:
                cached.prepare_data()
            loads.append(timer)
        cached_load = Timer()
        cached_load.cpu = statistics.median(t.cpu for t in loads)
        cached_load.wall = statistics.median(t.wall for t in loads)
        with Timer() as cached_setup:
            cached.setup("fit")
        targets = cached.splits.train.targets
        assert len(targets) == TRAIN_IMAGES
        tracemalloc.start()  # separately: tracing slows allocation down
        again = datamodule(root, cache)
        again.prepare_data()
        again.setup("fit")
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()

        timings = {
            "class_balanced": sampler_epoch_seconds(
                ClassBalancedSampler(targets, num_replicas=RANKS, rank=0, seed=0), args.epochs
            ),
            "class_aware": sampler_epoch_seconds(
                ClassAwareSampler(targets, num_replicas=RANKS, rank=0, seed=0), args.epochs
            ),
            "shuffle (torch DistributedSampler)": sampler_epoch_seconds(
                DistributedSampler(targets, num_replicas=RANKS, rank=0, shuffle=True, seed=0), args.epochs
            ),
        }
    finally:
        if args.keep or args.tree:
            shutil.rmtree(work if args.tree else cache, ignore_errors=True)
            print(f"kept the tree: --tree {root}")
        else:
            started = time.perf_counter()
            shutil.rmtree(work, ignore_errors=True)
            print(f"deleted the tree in {time.perf_counter() - started:.1f} s")

    sampler = max(timings["class_balanced"], timings["class_aware"], key=lambda t: t.cpu)
    figures = {
        "first_scan_s": first_scan.cpu,
        "cached_startup_s": cached_load.cpu,
        "index_mb": index_mb,
        "sampler_s_per_epoch_rank": sampler.cpu,
    }
    print()
    print("| figure | CPU time | wall | reference (issue 11) | CPU / reference | beside it, in this run |")
    print("|---|---:|---:|---:|---:|---|")
    print(
        f"| first scan (s) | {first_scan.cpu:.2f} | {first_scan.wall:.2f} | {REFERENCE['first_scan_s']} | "
        f"{first_scan.cpu / REFERENCE['first_scan_s']:.2f} | bare os.scandir of the same folders: {listing.cpu:.2f} s CPU "
        f"({first_scan.cpu / listing.cpu:.1f}x) |"
    )
    print(
        f"| cached start-up: prepare_data (s) | {cached_load.cpu:.3f} | {cached_load.wall:.3f} | "
        f"{REFERENCE['cached_startup_s']} | {cached_load.cpu / REFERENCE['cached_startup_s']:.2f} | median of 3 (CPU "
        f"{', '.join(f'{t.cpu:.3f}' for t in loads)}); then setup (splits, datasets): {cached_setup.cpu:.3f} s CPU |"
    )
    print(
        f"| index memory (MB) | {index_mb:.1f} | | {REFERENCE['index_mb']} | {index_mb / REFERENCE['index_mb']:.2f} "
        f"| bytes of the index arrays; Python allocation peak of a cached start-up: {peak_mb:.1f} MB |"
    )
    for name, timer in timings.items():
        reference = REFERENCE["sampler_s_per_epoch_rank"] if "DistributedSampler" not in name else None
        ratio = f"{timer.cpu / reference:.2f}" if reference else ""
        print(
            f"| sampler {name}, s/epoch, rank 0 of {RANKS} | {timer.cpu:.3f} | {timer.wall:.3f} | {reference or ''} | "
            f"{ratio} | {len(targets):,} labels, {-(-len(targets) // RANKS):,} indices per rank |"
        )
    print(f"# load at the end: {os.getloadavg()[0]:.2f}")

    limits = {k: REFERENCE[k] * (args.memory_tolerance if k == "index_mb" else args.tolerance) for k in REFERENCE}
    worse = [f"{k}={figures[k]:.3f} > {limits[k]:.3f}" for k in REFERENCE if figures[k] > limits[k]]
    for line in worse:
        print(f"REGRESSION: {line}", file=sys.stderr)
    summary = " ".join(f"{k}={v:.3f}" for k, v in figures.items())
    print(f"index_scale_guard={'REGRESSION' if worse else 'ok'} {summary}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
