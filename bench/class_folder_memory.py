"""Peak memory of ``python train.py dataset=class_folder dataset.data_dir=<100 photos>`` with its defaults.

Builds a class-folder tree of real photos from ``../shared/data/imagenet-samples`` (symlinks):
``--classes`` classes x ``--per-class`` training photos, plus ``--val-per-class`` other photos per
class in ``val/``; then runs ``train.py`` on it as a user would (its defaults: model, batch size,
augmentation, loader workers, W&B offline) for ``--epochs`` epochs and samples, every 0.1 s, the
resident memory of the whole process tree (the training process, its DataLoader workers, W&B's
service): RSS summed over the processes (pages shared by forked workers counted in each: an upper
bound) and PSS (shared pages split among their sharers: what the tree really takes). ``--baseline`` runs the old defaults beside it (``model=resnet9 dataset.batch_size=128``,
the CIFAR ResNet-9 at 224 px: ~10 GB) in the same way, one after the other.

    python bench/class_folder_memory.py [--epochs 2] [--baseline] [extra train.py overrides]

Last line: ``peak_rss_gb=<peak summed RSS of the defaults' process tree, GB>`` (and ``baseline_peak_rss_gb``,
``ratio`` before it with --baseline).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "imagenet-samples"
PAGE = os.sysconf("SC_PAGE_SIZE")


def build_tree(root: Path, classes: int, per_class: int, val_per_class: int) -> Path:
    photos = sorted(SAMPLES.glob("n*_*.JPEG"))
    need = classes * (per_class + val_per_class)
    if len(photos) < need:
        raise SystemExit(f"need {need} photos in {SAMPLES}, found {len(photos)}")
    k = 0
    for c in range(classes):
        for split, count in (("train", per_class), ("val", val_per_class)):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                (folder / photos[k].name).symlink_to(photos[k].resolve())
                k += 1
    return root


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc; no psutil)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes: PSS splits the pages it shares (e.g. with forked loader
    workers) among the sharers, so PSS summed over processes is the memory they really take."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def peak_memory(args: list[str], cwd: Path) -> tuple[dict[str, int], float, int]:
    """Peaks of ``python train.py *args``'s process tree (summed RSS, summed PSS, the training
    process's own RSS), wall seconds and the return code."""
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("WANDB_API_KEY", None)
    start = time.monotonic()
    peaks = {"rss": 0, "pss": 0, "main_rss": 0}
    with open(cwd / "train_output.txt", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        while proc.poll() is None:
            sizes = [memory(p) for p in tree(proc.pid)]
            peaks["rss"] = max(peaks["rss"], sum(r for r, _ in sizes))
            peaks["pss"] = max(peaks["pss"], sum(p for _, p in sizes))
            peaks["main_rss"] = max(peaks["main_rss"], memory(proc.pid)[0])
            time.sleep(0.2)
    return peaks, time.monotonic() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--val-per-class", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="also run the old defaults (model=resnet9, batch 128)")
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="class_folder_memory_") as tmp:
        tmp = Path(tmp)
        tree = build_tree(tmp / "photos", args.classes, args.per_class, args.val_per_class)
        common = ["dataset=class_folder", f"dataset.data_dir={tree}", f"trainer.max_epochs={args.epochs}"]
        runs = {"defaults": []}
        if args.baseline:
            runs["baseline"] = ["model=resnet9", "dataset.batch_size=128"]
        peaks = {}
        for name, extra in runs.items():
            cwd = tmp / name
            cwd.mkdir()
            peak, wall, code = peak_memory([*common, *extra, *overrides, "hydra.run.dir=run"], cwd)
            if code != 0:
                print((cwd / "train_output.txt").read_text()[-3000:])
                raise SystemExit(f"{name}: train.py exited with {code}")
            peaks[name] = peak["rss"]
            print(
                f"{name}: peak RSS {peak['rss'] / 1e9:.2f} GB summed over the process tree (PSS {peak['pss'] / 1e9:.2f} GB, "
                f"training process alone {peak['main_rss'] / 1e9:.2f} GB), {wall:.0f} s "
                f"({' '.join([*extra, *overrides]) or 'no overrides'})",
                flush=True,
            )
        if args.baseline:
            print(f"baseline_peak_rss_gb={peaks['baseline'] / 1e9:.2f}")
            print(f"ratio={peaks['defaults'] / peaks['baseline']:.3f}")
        print(f"peak_rss_gb={peaks['defaults'] / 1e9:.2f}")


if __name__ == "__main__":
    main()
