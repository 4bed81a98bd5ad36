"""experiment=finetune runs end to end on a tiny generated class folder, from a local ResNet-50 weight
file (torchvision's layout), through predict.py images= on new photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litvision.lightning_modules.backbones import build_backbone
from litvision.utils.checkpoint_io import load_checkpoint
from tests.helpers.run_helpers import read_metrics, run_script


def photo_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, level in (("cat", 60), ("dog", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                image = np.clip(rng.normal(level, 40, (48 + 8 * i, 56, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_experiment_finetune_runs_from_a_local_weight_file_to_predictions(tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    weights = tmp_path / "resnet50.pth"
    torch.save(build_backbone("resnet50", num_classes=1000).state_dict(), weights)  # torchvision's layout
    run_dir = tmp_path / "run"
    proc = run_script(
        "train.py",
        "experiment=finetune",
        f"dataset.data_dir={photos}",
        f"model.backbone.weights={weights}",
        "augmentation.resolution=32",
        "trainer.max_epochs=2",
        "dataset.batch_size=4",
        "dataset.num_workers=0",
        "dataset.progress=false",
        "trainer.accelerator=cpu",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert "loaded" in log and "fc.weight" in log  # the load report: the head replaced for 2 classes
    assert "finetune=freeze_unfreeze" in log and "everything trains" in log  # the unfreeze after epoch 0
    metrics = read_metrics(run_dir)
    assert "test/acc_top1" in metrics
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["litvision_finetune"] == {"name": "freeze_unfreeze", "frozen": False}
    assert checkpoint["hyper_parameters"]["finetune"]["_target_"].endswith("FreezeUnfreeze")
    predictions = tmp_path / "predict"
    run_script(
        "predict.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"images={photos / 'val' / 'cat'}",
        "logger=none",
        f"hydra.run.dir={predictions}",
        timeout=300,
    )
    assert list(predictions.rglob("predictions*.csv"))
