"""What each ``dataset.verify_shards`` level costs: one shard set streamed with none vs size vs sha256.

1. A shard set from the first ``--images-count`` real ImageNet sample JPEGs (``train/`` only is
   measured; 50 samples per shard), written by ``prepare_shards``' own code into a temp dir.
2. Read path alone (the worst case for verification: nothing else to hide it): every shard read
   whole through :class:`~litvision.datamodules.shards.stream.ShardStream.raw_samples` (tar parsing,
   member/label/count checks, then byte count and SHA-256 by level), warm page cache, levels
   interleaved per round, ``--rounds`` rounds; also WebDataset's own tar iterator
   (``tarfile_samples``, the reader before verification existed) as a reference.
3. The evaluation pipeline (decode + the ImageNet eval resize/crop, uint8 batches of 32, 0 workers)
   at none vs sha256: what the check costs in a real pass.

Time ratios per round (CPU time of this process, and wall clock), median over rounds (> 1 =
slower than none). Last line: ``sha256_vs_none=<median CPU-time ratio of the read path, sha256 / none>``.

    python bench/verify_shards.py [--images-count 300] [--rounds 3]
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
from litvision.datamodules.shards.read_plan import Piece  # noqa: E402
from litvision.launch.resolvers import register_resolvers  # noqa: E402

LEVELS = ("none", "size", "sha256")


def build_tree(images: list[Path], root: Path) -> None:
    for split, files in (("train", images), ("val", images[:10])):
        for f in files:
            folder = root / split / f.name.split("_", 1)[0]
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(f.resolve(), folder / f.name)
    when = time.time() - 3600
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (when, when), follow_symlinks=False)


def read_all(stream) -> int:
    """Every sample of every shard, undecoded; returns the image bytes read."""
    pieces = [Piece(k, 0, count) for k, count in enumerate(stream.counts)]
    return sum(len(s[s["__image__"]]) for s in stream.raw_samples(pieces))


def read_all_webdataset(urls: list[str]) -> int:
    from webdataset.tariterators import tarfile_samples

    return sum(len(s["jpg"]) for s in tarfile_samples(iter([{"url": u} for u in urls])))


def timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of this process): everything runs here (0 loader workers), so on a shared VM
    the CPU time is the figure that measures the code rather than the other tenants."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "imagenet-samples")
    parser.add_argument("--images-count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    files = sorted(args.images.glob("n*_*.JPEG"))[: args.images_count]
    if not files:
        print(f"no sample JPEGs at {args.images}", file=sys.stderr)
        return 2
    register_resolvers()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    augmentation = OmegaConf.load(REPO / "conf" / "augmentation" / "imagenet.yaml")
    eval_transform = instantiate(OmegaConf.create({"augmentation": augmentation}).augmentation.eval)
    print(
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    work = Path(tempfile.mkdtemp(prefix="litvision-verify-bench-", dir=args.dir))
    try:
        build_tree(files, work / "tree")
        out = work / "shards"
        prepare(
            ClassFolderDataModule(str(work / "tree"), val_split="val", test_split="val", progress=False),
            out,
            samples_per_shard=50,
            workers=1,
            verify="header",
        )
        shard_mb = sum(p.stat().st_size for p in out.glob("train-*.tar")) / 1e6

        def module(level: str) -> ShardDataModule:
            dm = ShardDataModule(
                str(out),
                batch_size=32,
                num_workers=0,
                train_transform=eval_transform,
                eval_transform=eval_transform,
                verify_shards=level,
                persistent_workers=False,
                seed=0,
            )
            dm.setup("fit")
            return dm

        streams = {level: module(level).splits.train for level in LEVELS}
        # the same shards as an evaluation split (decode + eval transform), at none and sha256
        eval_streams = {level: module(level).stream("train", training=False) for level in ("none", "sha256")}
        urls = streams["none"].urls
        print(f"shard set: {len(files)} train images, {len(urls)} shards, {shard_mb:.1f} MB")
        read_all(streams["none"])  # warm the page cache

        read_times: dict[str, list[tuple[float, float]]] = {name: [] for name in (*LEVELS, "webdataset")}
        for r in range(args.rounds):
            order = list(LEVELS) + ["webdataset"]
            order = order[r % len(order) :] + order[: r % len(order)]
            for name in order:
                if name == "webdataset":
                    read_times[name].append(timed(lambda: read_all_webdataset(urls)))
                else:
                    read_times[name].append(timed(lambda stream=streams[name]: read_all(stream)))

        def eval_pass(stream) -> None:
            from litvision.datamodules.datasets.file_dataset import collate_skipping_bad
            from litvision.datamodules.shards.stream import ShardLoader

            stream.configure(1, 0, 32)
            for _ in ShardLoader(stream, batch_size=32, num_workers=0, collate_fn=collate_skipping_bad):
                pass

        eval_times: dict[str, list[tuple[float, float]]] = {"none": [], "sha256": []}
        for r in range(args.rounds):
            for level in ("none", "sha256") if r % 2 == 0 else ("sha256", "none"):
                eval_times[level].append(timed(lambda stream=eval_streams[level]: eval_pass(stream)))

        def ratio(times, base, k):  # median over rounds of the per-round ratio; k: 0 wall, 1 CPU
            return statistics.median(t[k] / b[k] for t, b in zip(times, base, strict=True))

        print(f"\n## read path alone (warm cache, {args.rounds} rounds, {len(files)} samples, {shard_mb:.1f} MB)\n")
        print(
            "| reader | MB per CPU s, median | samples per CPU s | CPU-time ratio to none | wall-time ratio to none |"
        )
        print("|---|---:|---:|---:|---:|")
        for name, times in read_times.items():
            cpu = statistics.median(t[1] for t in times)
            print(
                f"| {name} | {shard_mb / cpu:.0f} | {len(files) / cpu:.0f} | {ratio(times, read_times['none'], 1):.3f} "
                f"| {ratio(times, read_times['none'], 0):.3f} |"
            )
        print(f"\n## evaluation pass (decode + eval resize/crop 224, batch 32, 0 workers, {args.rounds} rounds)\n")
        print("| verify | images per CPU s, median | CPU-time ratio to none | wall-time ratio to none |")
        print("|---|---:|---:|---:|")
        for level, times in eval_times.items():
            print(
                f"| {level} | {len(files) / statistics.median(t[1] for t in times):.0f} "
                f"| {ratio(times, eval_times['none'], 1):.3f} | {ratio(times, eval_times['none'], 0):.3f} |"
            )
        print(f"\n# load at the end: {os.getloadavg()[0]:.2f}")
        print(f"eval_sha256_vs_none={ratio(eval_times['sha256'], eval_times['none'], 1):.3f}")
        print(f"sha256_vs_none={ratio(read_times['sha256'], read_times['none'], 1):.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
