"""ImageNet input pipeline throughput: ours vs a PIL/torchvision-style reference vs raw decoding.

Four pipelines over the same JPEGs, each as a Dataset behind a DataLoader (batch 32):

  (a) decode   - read the file + OpenCV (libjpeg-turbo) full-size decode to RGB; nothing else.
                 The practical per-image limit of any pipeline that decodes every pixel.
  (b) pil      - the common torchvision recipe, written with PIL + numpy/torch (torchvision is
                 not a dependency): PIL open/convert("RGB"), RandomResizedCrop(224) (torchvision's
                 parameter sampling, crop + antialiased bilinear resize), horizontal flip,
                 to_tensor (float /255), normalize.
  (c) train    - ours: FileListDataset + conf/augmentation/imagenet.yaml `train` (reduced-size
                 DCT decode where it cannot lower the output resolution, RandomResizedCrop 224,
                 flip, uint8 CHW; normalisation happens later, per batch on the device).
  (d) eval     - ours: the `eval` pipeline (shorter side 256, center crop 224).

Single worker ("single"): the four run in this process (0 loader workers, 1 thread each),
advanced one batch each in turn, so that all see the same machine conditions; images/s is
measured in CPU seconds of the process (what other tenants of a shared machine disturb least)
and in wall seconds, summed over `--repeats` epochs. All workers ("all"): one worker process
per core, persistent, timed per epoch by wall clock, configurations interleaved per round,
best of `--repeats` (a shared machine makes these noisy).

    python bench/imagenet_pipeline.py --images ../shared/data/imagenet-samples [--repeats 3]

Last line: ``train_vs_pil=<(c)/(b)> train_vs_decode=<(c)/(a)>`` from the single-worker CPU-time
rates: the per-core cost of each pipeline, which all-worker throughput scales with on a machine
of one's own (workers are independent). On a shared machine wall-clock figures mostly measure
the other tenants; they are printed alongside.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from litvision.datamodules.datasets.file_dataset import FileListDataset  # noqa: E402
from litvision.datamodules.readers.decode import decode_image  # noqa: E402
from litvision.launch.resolvers import register_resolvers  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class DecodeOnly(Dataset):
    """(a) read + full decode; returns only the shape so collation costs nothing."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with open(self.files[i], "rb") as f:
            image = decode_image(f.read())
        return torch.tensor(image.shape)


def torchvision_rrc_params(
    width: int, height: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision.transforms.RandomResizedCrop.get_params, with the same draws (torch RNG)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PilReference(Dataset):
    """(b) torchvision's ImageFolder + RandomResizedCrop/RandomHorizontalFlip/ToTensor/Normalize."""

    def __init__(self, files: list[Path], size: int = 224) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with open(self.files[i], "rb") as f:  # torchvision's pil_loader
            img = Image.open(f).convert("RGB")
        top, left, h, w = torchvision_rrc_params(*img.size)
        img = img.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)
        if torch.rand(1).item() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
        return t.sub_(MEAN).div_(STD)


def our_dataset(files: list[Path], split: str) -> FileListDataset:
    register_resolvers()
    cfg = OmegaConf.create({"augmentation": OmegaConf.load(REPO / "conf" / "augmentation" / "imagenet.yaml")})
    transform = instantiate(cfg.augmentation[split])
    root = os.path.commonpath([str(f) for f in files])
    rel = [os.path.relpath(f, root) for f in files]
    return FileListDataset(root, rel, np.zeros(len(files), dtype=np.int64), transform)


def loader(dataset: Dataset, workers: int, batch_size: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=getattr(dataset, "collate_fn", None),
        prefetch_factor=4 if workers else None,
    )


def batch_size_of(batch) -> int:
    return len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)


def interleaved_single(loaders: dict[str, DataLoader], epochs: int) -> dict[str, tuple[float, float]]:
    """In-process loaders advanced one batch each in turn (round robin), so that every pipeline
    sees the same machine conditions; returns {name: (images per CPU second, per wall second)}
    over all ``epochs``."""
    cpu = dict.fromkeys(loaders, 0.0)
    wall = dict.fromkeys(loaders, 0.0)
    images = dict.fromkeys(loaders, 0)
    for _ in range(epochs):
        iterators = {name: iter(dl) for name, dl in loaders.items()}
        while iterators:
            for name in list(iterators):
                c0, w0 = time.process_time(), time.perf_counter()
                batch = next(iterators[name], None)
                c1, w1 = time.process_time(), time.perf_counter()
                if batch is None:
                    del iterators[name]
                    continue
                cpu[name] += c1 - c0
                wall[name] += w1 - w0
                images[name] += batch_size_of(batch)
    return {name: (images[name] / cpu[name], images[name] / wall[name]) for name in loaders}


def epoch_rate(dl: DataLoader) -> float:
    start, n = time.perf_counter(), 0
    for batch in dl:
        n += batch_size_of(batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "imagenet-samples"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    if not files:
        raise SystemExit(f"no JPEGs in {args.images}")
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(1)  # one core per pipeline process, in every configuration
    cv2.setNumThreads(1)
    pipelines = {
        "(a) decode": DecodeOnly(files),
        "(b) pil": PilReference(files),
        "(c) train": our_dataset(files, "train"),
        "(d) eval": our_dataset(files, "eval"),
    }
    single = {p: loader(ds, 0, args.batch_size) for p, ds in pipelines.items()}
    parallel = {p: loader(ds, args.workers, args.batch_size) for p, ds in pipelines.items()}
    interleaved_single(single, 1)  # warm-up: page cache, lazy imports
    for dl in parallel.values():  # warm-up: worker start-up
        epoch_rate(dl)
    rates = interleaved_single(single, args.repeats)
    best_all = dict.fromkeys(parallel, 0.0)
    for _ in range(args.repeats):
        for p, dl in parallel.items():
            best_all[p] = max(best_all[p], epoch_rate(dl))

    print(
        f"# {len(files)} JPEGs from {args.images}; {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; opencv {cv2.__version__}, "
        f"torch {torch.__version__}; {args.repeats} epochs per configuration, batch {args.batch_size}"
    )
    print(f"{'images/s':<12} {'single, CPU time':>17} {'single, wall':>13} {f'all ({args.workers} workers), wall':>24}")
    for p in pipelines:
        print(f"{p:<12} {rates[p][0]:>17.1f} {rates[p][1]:>13.1f} {best_all[p]:>24.1f}")
    print(
        f"# all workers, wall: train/pil={best_all['(c) train'] / best_all['(b) pil']:.3f} "
        f"train/decode={best_all['(c) train'] / best_all['(a) decode']:.3f}"
    )
    c, b, a = (rates[p][0] for p in ("(c) train", "(b) pil", "(a) decode"))
    print(f"train_vs_pil={c / b:.3f} train_vs_decode={c / a:.3f}")


if __name__ == "__main__":
    main()
