"""Images/s of a ResNet-50 training step on a GPU: bf16 autocast, channels-last, fed by the ImageNet
file pipeline (FileListDataset + conf/augmentation/imagenet.yaml ``train``) from real JPEGs.

    python bench/gpu_resnet50_step.py --images ../shared/data/imagenet-samples --out step.json [--compile]

The classifier as the run builds it (model=resnet50), SGD, loader workers decoding and augmenting
the sample JPEGs (cycled), normalised on the device as a run does. Warm-up steps (and, with
``--compile``, the compilation) are left out of the timing. Used by bench/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imagenet_pipeline import loader, our_dataset

from litvision.lightning_modules.classifier import ImageClassifier

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    files = files * max(1, (args.batch_size * 4) // len(files) + 1)  # enough for a few batches per epoch
    data = loader(our_dataset(files, "train"), args.workers, args.batch_size)
    device = torch.device("cuda")
    model = ImageClassifier(
        {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "resnet50"}, num_classes=1000
    )
    net = model.net.to(device).to(memory_format=torch.channels_last)
    if args.compile:
        net.compile()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    mean, std = MEAN.to(device), STD.to(device)
    done, images, start = 0, 0, 0.0
    while done < args.warmup + args.steps:
        for batch in data:
            x = batch[0].to(device, non_blocking=True).float().sub_(mean).div_(std)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 1000, (len(x),), device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == args.warmup:
                torch.cuda.synchronize()
                start = time.perf_counter()
            elif done > args.warmup:
                images += len(x)
            if done >= args.warmup + args.steps:
                break
    torch.cuda.synchronize()
    rate = images / (time.perf_counter() - start)
    result = {"images_per_s": round(rate, 1), "batch_size": args.batch_size, "compile": args.compile}
    result["device"] = torch.cuda.get_device_name()
    args.out.write_text(json.dumps(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
