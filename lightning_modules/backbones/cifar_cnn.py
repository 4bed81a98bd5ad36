"""Small CIFAR networks that train in minutes on a CPU.

The residual layout follows the DAWNBench "ResNet-9" of Myrtle.ai (Page, 2018): few,
wide stages with max-pool downsampling, which learns CIFAR quickly from little data.
"""

from __future__ import annotations

from torch import nn


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    """prep -> [conv+pool, residual] -> conv+pool -> [conv+pool, residual] -> pool -> fc.

    ``width`` scales all stages (64 is the original). ``logit_scale`` (0.125 in the
    original) tames the large max-pooled logits, which otherwise destabilise early training.
    """

    def __init__(
        self, num_classes: int = 10, width: int = 64, in_channels: int = 3, logit_scale: float = 0.125
    ) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        w = width
        self.features = nn.Sequential(
            conv_bn(in_channels, w),
            conv_bn(w, 2 * w, pool=True),
            Residual(2 * w),
            conv_bn(2 * w, 4 * w, pool=True),
            conv_bn(4 * w, 8 * w, pool=True),
            Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8 * w, num_classes, bias=False)

    def forward(self, x):
        return self.fc(self.features(x)) * self.logit_scale


class SmallCNN(nn.Module):
    """Plain 4-stage CNN (conv-bn-relu x2 + pool per stage): the simplest sane baseline."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        stages, c_in = [], in_channels
        for i in range(4):
            c_out = width * 2**i
            stages += [conv_bn(c_in, c_out), conv_bn(c_out, c_out, pool=True)]
            c_in = c_out
        self.features = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))
