"""Whitening first layer (lightning_modules/backbones/airbench.py) and its initialisation callback."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import torch

from litvision.callbacks.whitening_init import WhiteningInit
from litvision.datamodules.device_resident import DeviceCIFAR10DataModule
from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.backbones.airbench import AirbenchNet, WhiteningConv
from litvision.lightning_modules.classifier import ImageClassifier

NORMALIZE = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
TINY_AIRBENCH = functools.partial(build_backbone, name="airbench", widths=[8, 16, 16])


def _correlated_images(n: int = 300, seed: int = 0) -> torch.Tensor:
    """Smooth, channel-correlated images: neighbouring pixels and channels far from independent."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, 17, 17, generator=generator)
    smooth = torch.nn.functional.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False)
    mix = torch.tensor([[1.0], [0.8], [0.5]]).view(1, 3, 1, 1)
    return smooth * mix + 0.1 * torch.randn(n, 3, 16, 16, generator=generator) + 0.3


def test_whitened_patches_have_identity_covariance() -> None:
    images = _correlated_images()
    layer = WhiteningConv(in_channels=3, kernel_size=2)
    layer.init_whitening(images, eps=1e-6)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, layer.weight)  # without the bias
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = half.T @ half / len(half)
    assert torch.allclose(covariance, torch.eye(12), atol=2e-3), covariance.diagonal()
    assert torch.equal(out[:, 12:], -out[:, :12])  # the negated copies
    # the raw patches were far from white: the test would fail on an identity-like layer
    raw = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    assert (raw.T @ raw / len(raw) - torch.eye(12)).abs().max() > 0.3


def test_whitening_weights_are_frozen_and_bias_trains() -> None:
    net = AirbenchNet(num_classes=10, widths=(8, 16, 16))
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _fit(root: Path, out: Path, max_epochs: int, ckpt_path: str | None = None) -> ImageClassifier:
    L.seed_everything(0)
    dm = DeviceCIFAR10DataModule(
        data_dir=str(root),
        download=False,
        batch_size=32,
        normalize=NORMALIZE,
        batch_augment={"translate": 2, "flip": "alternating"},
    )
    model = ImageClassifier(backbone=TINY_AIRBENCH, optimizer=functools.partial(torch.optim.SGD, lr=0.05))
    trainer = L.Trainer(
        default_root_dir=str(out),
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[WhiteningInit(num_images=64)],
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return model


def test_callback_whitens_on_fresh_fits_and_keeps_resumed_weights(fake_cifar_root: Path, tmp_path: Path) -> None:
    dm = DeviceCIFAR10DataModule(
        data_dir=str(fake_cifar_root),
        download=False,
        batch_size=32,
        normalize=NORMALIZE,
        batch_augment={"translate": 2, "flip": "alternating"},
    )
    dm.setup("fit")
    first = [dm.on_after_batch_transfer(batch, 0)[0] for _, batch in zip(range(2), dm.train_dataloader(), strict=False)]
    expected = WhiteningConv(3, 2)
    expected.init_whitening(torch.cat(first)[:64])

    model = _fit(fake_cifar_root, tmp_path / "a", max_epochs=1)
    assert torch.allclose(model.net.whiten.weight, expected.weight, atol=1e-6)  # frozen: still the init

    # a resumed fit keeps the checkpoint's whitening (a fresh init would differ: other data order)
    checkpoint = str(next((tmp_path / "a").rglob("*.ckpt")))
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]["net.whiten.weight"]
    saved.add_(1.0)  # make the checkpointed value recognisable
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"]["net.whiten.weight"] = saved
    torch.save(ckpt, tmp_path / "marked.ckpt")
    resumed = _fit(fake_cifar_root, tmp_path / "b", max_epochs=2, ckpt_path=str(tmp_path / "marked.ckpt"))
    assert torch.equal(resumed.net.whiten.weight, saved)
