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

Each runs with 0 worker processes (one core, in-process: "single") and with one worker per
core ("all"). Loaders are persistent; every configuration is warmed up once, then timed
`--repeats` times, interleaved (all configurations per round), keeping the best epoch.
Single runs are also timed in CPU seconds of the process (threads pinned to 1), which other
tenants of a shared machine barely disturb.

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

from datamodules.decode import decode_image  # noqa: E402
from datamodules.file_dataset import FileListDataset  # noqa: E402
from lightning_modules.resolvers import register_resolvers  # noqa: E402

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


def torchvision_rrc_params(width: int, height: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
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
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
        collate_fn=getattr(dataset, "collate_fn", None), prefetch_factor=4 if workers else None,
    )


def epoch_rates(dl: DataLoader, n: int) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) for one epoch."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in dl:
        pass
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


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
    settings = {"single": 0, "all": args.workers}
    loaders = {(p, s): loader(ds, w, args.batch_size) for p, ds in pipelines.items() for s, w in settings.items()}
    for dl in loaders.values():  # warm-up: page cache, worker start-up, lazy imports
        epoch_rates(dl, len(files))
    wall = {key: 0.0 for key in loaders}
    cpu = {p: 0.0 for p in pipelines}
    for _ in range(args.repeats):
        for (p, s), dl in loaders.items():
            rate, cpu_rate = epoch_rates(dl, len(files))
            wall[(p, s)] = max(wall[(p, s)], rate)
            if s == "single":  # in-process: this process's CPU time is the pipeline's
                cpu[p] = max(cpu[p], cpu_rate)

    print(f"# {len(files)} JPEGs from {args.images}; {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; opencv {cv2.__version__}, "
          f"torch {torch.__version__}; best of {args.repeats} interleaved epochs, batch {args.batch_size}")
    print(f"{'images/s':<12} {'single, CPU time':>17} {'single, wall':>13} {f'all ({args.workers} workers), wall':>24}")
    for p in pipelines:
        print(f"{p:<12} {cpu[p]:>17.1f} {wall[(p, 'single')]:>13.1f} {wall[(p, 'all')]:>24.1f}")
    for s in settings:
        print(f"# {s}, wall: train/pil={wall[('(c) train', s)] / wall[('(b) pil', s)]:.3f} "
              f"train/decode={wall[('(c) train', s)] / wall[('(a) decode', s)]:.3f}")
    c, b, a = (cpu[p] for p in ("(c) train", "(b) pil", "(a) decode"))
    print(f"train_vs_pil={c / b:.3f} train_vs_decode={c / a:.3f}")


if __name__ == "__main__":
    main()
