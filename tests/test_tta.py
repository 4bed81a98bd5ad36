"""Test-time augmentation inside the backbone (lightning_modules/backbones/tta.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from litvision.lightning_modules.backbones import build_backbone


def _net(tta: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("airbench", num_classes=10, widths=[8, 16, 16], tta=tta).eval()


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Output pixel (y, x) = input pixel (y + dy, x + dx), reflect-101 borders (numpy's reflect)."""
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    h, w = x.shape[-2:]
    return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def test_flip_tta_is_the_mean_over_the_image_and_its_mirror_in_eval_only() -> None:
    wrapped = _net("flip")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = 0.5 * (wrapped.net(x) + wrapped.net(x.flip(-1)))
        assert torch.allclose(wrapped(x), expected)
        assert torch.allclose(wrapped(x.flip(-1)), wrapped(x), atol=1e-5)  # mirror-invariant
        wrapped.train()
        assert torch.allclose(wrapped(x), wrapped.net(x))  # training sees the plain network


def test_flip_translate_weighs_the_six_views_as_airbench() -> None:
    wrapped = _net("flip_translate")
    x = torch.randn(3, 3, 32, 32)
    net = wrapped.net
    with torch.no_grad():
        pair = lambda v: 0.5 * (net(v) + net(v.flip(-1)))  # noqa: E731
        expected = 0.5 * pair(x) + 0.25 * (pair(_shifted(x, -1, -1)) + pair(_shifted(x, 1, 1)))
        assert torch.allclose(wrapped(x), expected, atol=1e-6)
        assert not torch.allclose(wrapped(x), pair(x), atol=1e-4)


def test_no_tta_returns_the_bare_network_and_bad_modes_are_refused() -> None:
    assert type(_net("none")).__name__ == "AirbenchNet"
    with pytest.raises(ValueError, match="tta="):
        build_backbone("airbench", num_classes=10, widths=[8, 16, 16], tta="mirror")
