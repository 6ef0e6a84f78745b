"""A small ResNet encoder, for cross-architecture evaluation of synthetic sets.

The dataset-condensation papers test whether a set distilled with a ConvNet also trains other
families; their usual second family is a ResNet-10/18 with average pooling. This one is that
shape scaled for a CPU: a 3x3 stem, then ``len(stages)`` stages of basic residual blocks
(two 3x3 convs with a skip), doubling the width and halving the resolution at each stage after
the first (1x1 strided conv on the skip), then an adaptive average pool to ``final_pool``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from avdistill.errors import ConfigError
from avdistill.models.convnet import NORMS, norm_layer


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of one ResNet encoder: ``stages[i]`` basic blocks at width ``width * 2**i``."""

    width: int = 16
    stages: tuple[int, ...] = (1, 1, 1)
    norm: str = "batchnorm"
    final_pool: tuple[int, int] = (2, 2)

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.width < 1 or not self.stages or min(self.stages) < 1:
            raise ConfigError(f"ResNet width and every stage's block count must be >= 1, "
                              f"got width={self.width}, stages={self.stages}")

    def to_dict(self) -> dict:
        return asdict(self)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False), norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), norm_layer(norm, channels),
        )
        self.skip = (nn.Identity() if stride == 1 and in_channels == channels else
                     nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), norm_layer(norm, channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """Encoder: [N, C, H, W] -> embedding [N, embed_dim]."""

    def __init__(self, in_channels: int, input_size: tuple[int, int], config: ResNetConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, config.width, 3, padding=1, bias=False),
                                   norm_layer(config.norm, config.width), nn.ReLU(inplace=True)]
        channels = config.width
        for stage, blocks in enumerate(config.stages):
            width = config.width * 2 ** stage
            for block in range(blocks):
                layers.append(BasicBlock(channels, width, 2 if stage > 0 and block == 0 else 1, config.norm))
                channels = width
        layers.append(nn.AdaptiveAvgPool2d(config.final_pool))
        self.features = nn.Sequential(*layers)
        with torch.no_grad():  # probe the output size in eval mode, so batch-norm statistics stay untouched
            out = self.features.eval()(torch.zeros(1, in_channels, *input_size))
        self.features.train()
        self.output_shape = tuple(out.shape[1:])
        self.embed_dim = out[0].numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)
