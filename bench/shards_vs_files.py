"""Shards vs files on the real ImageNet sample JPEGs: conversion throughput, and images/s of the
training pipeline reading WebDataset shards vs reading the JPEG files, same decode and augmentation.

1. A tree ``train/<wnid>/`` + ``val/<wnid>/`` of the 1,000 real JPEGs (``shared/data/imagenet-samples``,
   copied, so the page-cache state of every file is ours to set) in a temp dir.
2. Conversion: ``prepare_shards`` (the same code as ``prepare_shards.py``) with ``verify=decode`` (the
   default: every image decoded once by the training decoder) and ``verify=header`` (marker/EOI check
   only), each from a cold page cache, with 1 writer (in this process: the per-core rate, which is
   what scales with cores) and ``--writers`` processes: images/s and MB/s of the whole run (index,
   plan, writer-pool start-up, writing, manifest).
3. Training pipeline, one process (``--loader-workers`` loader workers, 0 = in this process):
   ``dataset=imagenet``-style ``ClassFolderDataModule.train_dataloader()`` vs
   ``ShardDataModule.train_dataloader()``, both with ``conf/augmentation/imagenet.yaml``'s ``train``
   (reduced-size DCT decode where allowed, RandomResizedCrop 224, flip, uint8 batches of 32).
   Rounds alternate which side goes first. Before every epoch the side's data is evicted from the
   page cache (``--cache fadvise``: ``posix_fadvise(POSIX_FADV_DONTNEED)`` on each of its files after
   an fsync, so other tenants keep their cache; ``--cache drop``: ``echo 1 > /proc/sys/vm/drop_caches``,
   root only, system-wide), and the residency left is checked with ``fincore`` when it is installed.
   A warm-cache pass (no eviction) is measured too: it isolates the CPU cost of the two read paths.

Last line: ``shards_vs_files=<median over rounds of (shard images/s) / (file images/s), cold cache, wall clock>``.

    python bench/shards_vs_files.py --images ../shared/data/imagenet-samples [--rounds 5] [--cache fadvise|drop]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from litvision.datamodules.class_folder import ClassFolderDataModule  # noqa: E402
from litvision.datamodules.shard_datamodule import ShardDataModule  # noqa: E402
from litvision.datamodules.shards.prepare import prepare  # noqa: E402
from litvision.launch.resolvers import register_resolvers  # noqa: E402


def build_tree(images: Path, root: Path) -> int:
    """train/<wnid>/<file> and val/<wnid>/<file>: copies of the sample JPEGs; returns the train count."""
    files = sorted(images.glob("n*_*.JPEG"))
    for split in ("train", "val"):
        for f in files:
            folder = root / split / f.name.split("_", 1)[0]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, folder / f.name)
    when = time.time() - 3600  # an unchanging tree, so the file index is cached
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (when, when))
    return len(files)


def evict(paths: list[Path], method: str) -> None:
    if method == "drop":
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(paths: list[Path]) -> float | None:
    """Share of the files' bytes in the page cache (util-linux fincore), or None."""
    if shutil.which("fincore") is None:
        return None
    resident = total = 0
    for start in range(0, len(paths), 500):
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES,SIZE", *map(str, paths[start : start + 500])],
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            res, size = line.split()
            resident, total = resident + int(res), total + int(size)
    return resident / total if total else None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in usage)


def epoch(loader) -> tuple[int, float, float]:
    """(images, wall s, CPU s of this process and its finished children) for one pass."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    count = 0
    for images, _ in loader:
        count += len(images)
    return count, time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "imagenet-samples")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache", choices=("fadvise", "drop"), default="fadvise")
    parser.add_argument("--writers", type=int, default=os.cpu_count() or 1, help="prepare_shards processes")
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--samples-per-shard", type=int, default=250)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    if not args.images.is_dir():
        print(f"no sample JPEGs at {args.images}", file=sys.stderr)
        return 2
    register_resolvers()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    augmentation = OmegaConf.load(REPO / "conf" / "augmentation" / "imagenet.yaml")
    train_transform = instantiate(OmegaConf.create({"augmentation": augmentation}).augmentation.train)
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, load {os.getloadavg()[0]:.2f}; cache eviction: {args.cache}"
    )

    work = Path(tempfile.mkdtemp(prefix="litvision-shards-bench-", dir=args.dir))
    try:
        root = work / "imagenet"
        n = build_tree(args.images, root)
        tree_files = sorted(root.rglob("*.JPEG"))
        train_files = sorted((root / "train").rglob("*.JPEG"))
        source_mb = sum(f.stat().st_size for f in tree_files) / 1e6
        print(f"tree: {len(tree_files)} JPEGs ({source_mb:.0f} MB) under {root}")

        def files_dm() -> ClassFolderDataModule:
            return ClassFolderDataModule(
                str(root),
                val_split="val",
                test_split="val",
                progress=False,
                batch_size=32,
                num_workers=args.loader_workers,
                train_transform=train_transform,
                persistent_workers=False,
            )

        print("\n## conversion (prepare_shards, whole run incl. start-up of the writer pool, cold cache)\n")
        print(
            "| verify | writers | images | wall s | images/s | source MB/s | images per CPU second (1 writer: per core) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for verify in ("decode", "header"):
            for writers in sorted({1, args.writers}):
                out = work / f"shards-{verify}-{writers}"
                evict(tree_files, args.cache)
                cpu = cpu_seconds()
                stats = prepare(
                    files_dm(), out, samples_per_shard=args.samples_per_shard, workers=writers, verify=verify
                )
                per_cpu = stats["samples"] / (cpu_seconds() - cpu) if writers == 1 else float("nan")
                print(
                    f"| {verify} | {writers} | {stats['samples']} | {stats['seconds']:.2f} | "
                    f"{stats['samples'] / stats['seconds']:.0f} | {source_mb / stats['seconds']:.0f} | {per_cpu:.0f} |"
                )
        shard_files = sorted((work / "shards-decode-1").glob("train-*.tar"))

        sides = {
            "files": (files_dm, train_files),
            "shards": (
                lambda: ShardDataModule(
                    str(work / "shards-decode-1"),
                    batch_size=32,
                    num_workers=args.loader_workers,
                    train_transform=train_transform,
                    persistent_workers=False,
                ),
                shard_files,
            ),
        }
        loaders = {}
        for name, (make, _) in sides.items():
            dm = make()
            dm.setup("fit")
            loaders[name] = dm.train_dataloader()
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        residency = {}
        for cache in ("cold", "warm"):
            if cache == "warm":
                for name in sides:
                    epoch(loaders[name])  # every file of both sides in the page cache
            for r in range(args.rounds):
                order = ["files", "shards"] if r % 2 == 0 else ["shards", "files"]
                for name in order:
                    paths = sides[name][1]
                    if cache == "cold":
                        evict(paths, args.cache)
                        if name not in residency:
                            residency[name] = resident_fraction(paths)
                    count, wall, cpu = epoch(loaders[name])
                    assert count == n, (name, count)
                    results.setdefault((cache, name), []).append(
                        (count / wall, count / cpu if cpu > 0 else float("nan"))
                    )
        print(
            f"\n## training pipeline, images/s ({args.rounds} epochs each, {n} images, batch 32, "
            f"{args.loader_workers} loader workers)\n"
        )
        print("| cache | read from | wall, median | CPU time, median | resident after eviction |")
        print("|---|---|---:|---:|---:|")
        for (cache, name), rows in results.items():
            res = residency.get(name) if cache == "cold" else None
            print(
                f"| {cache} | {name} | {statistics.median(r[0] for r in rows):.1f} | {statistics.median(r[1] for r in rows):.1f} "
                f"| {'' if res is None else f'{100 * res:.1f}%'} |"
            )
        ratios = {}
        for cache in ("cold", "warm"):
            pairs = zip(results[(cache, "shards")], results[(cache, "files")], strict=True)
            walls, cpus = zip(*[(s[0] / f[0], s[1] / f[1]) for s, f in pairs], strict=True)
            ratios[cache] = statistics.median(walls)
            print(
                f"\n{cache} cache, shards/files per round: wall {', '.join(f'{w:.3f}' for w in walls)} "
                f"(median {statistics.median(walls):.3f}); CPU time median {statistics.median(cpus):.3f}"
            )
        print(f"# load at the end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"shards_vs_files={ratios['cold']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
