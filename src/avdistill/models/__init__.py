"""Encoders and heads, built by name: ``get_encoders(preset, prep)``.

``small`` and ``avdd`` are the distillation encoders. The other presets exist to evaluate a
synthetic set with networks it was not distilled with (cross-architecture): ``small`` changed in
one respect each (depth, width, normalisation) and a small ResNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avdistill.errors import ConfigError
from avdistill.models.convnet import ConvNet, ConvNetConfig
from avdistill.models.resnet import ResNet, ResNetConfig

EncoderConfig = ConvNetConfig | ResNetConfig


@dataclass(frozen=True)
class EncoderPreset:
    audio: EncoderConfig
    visual: EncoderConfig
    summary: str


PRESETS: dict[str, EncoderPreset] = {
    # AVDD: audio depth 3 with first-conv padding 3 -> 7x7; visual depth 5 at 224x224 -> 7x7; 128*49 = 6272 each.
    "avdd": EncoderPreset(
        audio=ConvNetConfig(width=128, depth=3, first_padding=3, final_pool=(7, 7)),
        visual=ConvNetConfig(width=128, depth=5, final_pool=(7, 7)),
        summary="AVDD encoders: width 128, audio depth 3, visual depth 5, both end at 7x7 (6272-d)",
    ),
    # CPU-sized encoders for small inputs (AV-Digits: 1x40x56 spectrograms, 1x32x32 frames): 32*4*4 = 512-d.
    "small": EncoderPreset(
        audio=ConvNetConfig(width=32, depth=3, final_pool=(4, 4)),
        visual=ConvNetConfig(width=32, depth=3, final_pool=(4, 4)),
        summary="small encoders: width 32, depth 3, both end at 4x4 (512-d)",
    ),
    # Cross-architecture variants of `small`, one change each.
    "small-deep": EncoderPreset(
        audio=ConvNetConfig(width=32, depth=4, final_pool=(2, 2)),
        visual=ConvNetConfig(width=32, depth=4, final_pool=(2, 2)),
        summary="small, one block deeper: width 32, depth 4, both end at 2x2 (128-d)",
    ),
    "small-wide": EncoderPreset(
        audio=ConvNetConfig(width=64, depth=3, final_pool=(4, 4)),
        visual=ConvNetConfig(width=64, depth=3, final_pool=(4, 4)),
        summary="small, twice as wide: width 64, depth 3, both end at 4x4 (1024-d)",
    ),
    "small-bn": EncoderPreset(
        audio=ConvNetConfig(width=32, depth=3, norm="batchnorm", final_pool=(4, 4)),
        visual=ConvNetConfig(width=32, depth=3, norm="batchnorm", final_pool=(4, 4)),
        summary="small with batch norm instead of instance norm (512-d)",
    ),
    "small-nonorm": EncoderPreset(
        audio=ConvNetConfig(width=32, depth=3, norm="none", final_pool=(4, 4)),
        visual=ConvNetConfig(width=32, depth=3, norm="none", final_pool=(4, 4)),
        summary="small without normalisation layers (512-d)",
    ),
    "resnet": EncoderPreset(
        audio=ResNetConfig(width=16, stages=(1, 1, 1), norm="batchnorm", final_pool=(2, 2)),
        visual=ResNetConfig(width=16, stages=(1, 1, 1), norm="batchnorm", final_pool=(2, 2)),
        summary="small ResNet: 3x3 stem, 3 stages of one basic block (width 16/32/64), batch norm, 2x2 (256-d)",
    ),
}


def build_encoder(in_channels: int, input_size: tuple[int, int], config: EncoderConfig) -> nn.Module:
    return (ResNet if isinstance(config, ResNetConfig) else ConvNet)(in_channels, input_size, config)


def uses_batch_statistics(preset: str) -> bool:
    """Whether the preset's encoders, in training mode, normalise over the batch (batch norm) rather than per sample."""
    spec = PRESETS[preset]
    return "batchnorm" in (spec.audio.norm, spec.visual.norm)


def get_encoders(preset: str, audio_shape: tuple[int, ...], frame_shape: tuple[int, ...],
                 generator_seed: int | None = None, device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """Fresh (audio, visual) encoders for inputs of the given per-sample shapes [C,H,W].

    With `generator_seed`, the initial weights are a pure function of the seed (the global RNG
    is saved and restored), so a run can rebuild exactly the networks it used.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown encoder preset {preset!r}; choose from {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    with torch.random.fork_rng(devices=[], enabled=generator_seed is not None):
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        audio = build_encoder(audio_shape[0], tuple(audio_shape[1:]), spec.audio)
        visual = build_encoder(frame_shape[0], tuple(frame_shape[1:]), spec.visual)
    return audio.to(device), visual.to(device)


__all__ = ["ConvNet", "ConvNetConfig", "ResNet", "ResNetConfig", "PRESETS", "build_encoder", "get_encoders",
           "uses_batch_statistics"]
