"""The ConvNet encoder of the dataset-condensation literature (DC, DM, MTT, AVDD).

A stack of ``depth`` blocks: 3x3 conv -> norm -> ReLU -> 2x2 pool. The last pool may be
adaptive, so encoders for inputs of different sizes (a 128x56 spectrogram, a 224x224 frame)
end at the same spatial grid and hence the same embedding size — what lets AVDD's cross-modal
terms add an audio mean to a visual mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from avdistill.errors import ConfigError
from avdistill.models.pooling import AvgPool2x2

NORMS = ("instancenorm", "batchnorm", "none")


@dataclass(frozen=True)
class ConvNetConfig:
    """Shape of one encoder. ``final_pool=None`` keeps the plain 2x2 pool in the last block."""

    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"
    first_padding: int = 1
    final_pool: tuple[int, int] | None = None

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.width < 1 or self.depth < 1:
            raise ConfigError(f"encoder width and depth must be >= 1, got width={self.width}, depth={self.depth}")

    def to_dict(self) -> dict:
        return asdict(self)


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":  # DC's "instancenorm": GroupNorm with one group per channel, affine
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvNet(nn.Module):
    """Encoder: [N, C, H, W] -> embedding [N, embed_dim]."""

    def __init__(self, in_channels: int, input_size: tuple[int, int], config: ConvNetConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(config.depth):
            padding = config.first_padding if block == 0 else 1
            layers += [nn.Conv2d(channels, config.width, 3, padding=padding), norm_layer(config.norm, config.width), nn.ReLU(inplace=True)]
            last = block == config.depth - 1
            layers.append(nn.AdaptiveAvgPool2d(config.final_pool) if last and config.final_pool else AvgPool2x2())
            channels = config.width
        self.features = nn.Sequential(*layers)
        self.features.eval()  # probe the output size without touching batch-norm running statistics
        with torch.no_grad():
            try:
                out = self.features(torch.zeros(1, in_channels, *input_size))
            except RuntimeError:
                raise ConfigError(f"input {input_size} is too small for an encoder of depth {config.depth}; "
                                  "lower the depth or set a final adaptive pool") from None
        self.features.train()
        self.output_shape = tuple(out.shape[1:])
        self.embed_dim = out.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)
