"""Encoders and heads, built by name: ``get_encoders(preset, prep)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avdistill.errors import ConfigError
from avdistill.models.convnet import ConvNet, ConvNetConfig


@dataclass(frozen=True)
class EncoderPreset:
    audio: ConvNetConfig
    visual: ConvNetConfig
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
}


def get_encoders(preset: str, audio_shape: tuple[int, ...], frame_shape: tuple[int, ...],
                 generator_seed: int | None = None, device: str | torch.device = "cpu") -> tuple[ConvNet, ConvNet]:
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
        audio = ConvNet(audio_shape[0], tuple(audio_shape[1:]), spec.audio)
        visual = ConvNet(frame_shape[0], tuple(frame_shape[1:]), spec.visual)
    return audio.to(device), visual.to(device)


__all__ = ["ConvNet", "ConvNetConfig", "PRESETS", "get_encoders"]
