"""Differentiable siamese augmentation (DSA) for frames and spectrograms.

DSA (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation", ICML'21)
augments the real and the synthetic batch with the *same* random transformation before they
are compared, and keeps every op differentiable so the matching loss reaches the synthetic
pixels. DM and AVDD use it unchanged. The ops and the reference numbers:

- ``color``: brightness, then saturation, then contrast (one op, three steps, as in DSA):
  brightness adds ``(u - 0.5) * 1.0``; saturation scales the deviation from the channel mean
  by ``u * 2.0`` (a no-op for one channel); contrast scales the deviation from the image mean
  by ``u + 0.5``.
- ``crop``: an integer translation of up to ``0.125`` of each side, zero filled.
- ``cutout``: zeroes a rectangle of half of each side at a random centre.
- ``flip``: mirrors the last axis (width / time) with probability ``0.5``.
- ``scale``: stretches each axis independently by ``s in [1/1.2, 1.2]``.
- ``rotate``: rotates by an angle uniform in ``±15°``.

Scale and rotate use ``F.affine_grid`` + ``F.grid_sample`` (bilinear, ``align_corners=True``,
zero padding) in normalised coordinates exactly as the DSA code does, so on a non-square input
(a 128 x 56 spectrogram) "rotate" is a rotation of the normalised square, as it was in AVDD.

As in DSA's default mode ("S"), each call draws ONE op from the strategy string and applies it.
Unlike the reference, no global RNG is touched: every draw comes from a ``torch.Generator``
seeded by the caller, so the same seed always gives the same op and the same parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from avdistill.errors import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


class Sampler:
    """Random parameters for one call, drawn on the CPU from a seeded generator.

    Siamese mode draws one value and repeats it over the batch, so the transformation depends on
    the seed alone and not on the batch size: a real batch of 128 and a synthetic batch of 10
    augmented with the same seed get exactly the same op. Otherwise each sample gets its own.
    """

    def __init__(self, generator: torch.Generator, n: int, siamese: bool, device, dtype):
        self.generator, self.n, self.siamese = generator, n, siamese
        self.device, self.dtype = device, dtype

    def _spread(self, values: Tensor) -> Tensor:
        return values.expand(self.n).to(self.device)

    def uniform(self) -> Tensor:
        """[N] floats in [0, 1)."""
        u = torch.rand(1 if self.siamese else self.n, generator=self.generator)
        return self._spread(u).to(self.dtype)

    def integers(self, low: int, high: int) -> Tensor:
        """[N] integers in [low, high)."""
        k = torch.randint(low, high, (1 if self.siamese else self.n,), generator=self.generator)
        return self._spread(k)


# ----------------------------------------------------------------------------- colour


def brightness(x: Tensor, rng: Sampler, ratio: float = 1.0) -> Tensor:
    return x + (rng.uniform() - 0.5).view(-1, 1, 1, 1) * ratio


def saturation(x: Tensor, rng: Sampler, ratio: float = 2.0) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (rng.uniform() * ratio).view(-1, 1, 1, 1) + mean


def contrast(x: Tensor, rng: Sampler, ratio: float = 0.5) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (rng.uniform() + ratio).view(-1, 1, 1, 1) + mean


def color(x: Tensor, rng: Sampler, brightness_ratio=1.0, saturation_ratio=2.0, contrast_ratio=0.5):
    """DSA's "color" op is all three colour steps in a row."""
    x = brightness(x, rng, brightness_ratio)
    x = saturation(x, rng, saturation_ratio)
    return contrast(x, rng, contrast_ratio)


# ----------------------------------------------------------------------------- geometry


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample x through per-sample 2x3 affine maps (output coords -> input coords)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def crop(x: Tensor, rng: Sampler, ratio: float = 0.125) -> Tensor:
    """Shift by whole pixels (up to ``ratio`` of each side), filling with zeros.

    DSA pads by one zero pixel and gathers clamped indices; a gather keeps the copy exact
    (no interpolation) and differentiable.
    """
    n, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy, dx = rng.integers(-sh, sh + 1), rng.integers(-sw, sw + 1)
    rows = (torch.arange(h, device=x.device) + dy[:, None] + 1).clamp(0, h + 1)  # [N, H]
    cols = (torch.arange(w, device=x.device) + dx[:, None] + 1).clamp(0, w + 1)  # [N, W]
    index = (rows[:, :, None] * (w + 2) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    padded = F.pad(x, (1, 1, 1, 1)).flatten(2)
    return padded.gather(2, index).view(n, c, h, w)


def cutout(x: Tensor, rng: Sampler, ratio: float = 0.5) -> Tensor:
    """Zero a rectangle of ``ratio`` of each side, centred anywhere (clipped at the borders)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = rng.integers(0, h + (1 - ch % 2)) - ch // 2
    left = rng.integers(0, w + (1 - cw % 2)) - cw // 2
    rows = torch.arange(h, device=x.device) - top[:, None]  # [N, H], offset into the hole
    cols = torch.arange(w, device=x.device) - left[:, None]  # [N, W]
    hole = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]
    return x * (~hole).unsqueeze(1).to(x.dtype)


def flip(x: Tensor, rng: Sampler, prob: float = 0.5) -> Tensor:
    """Mirror the last axis (image width, spectrogram time) with probability ``prob``."""
    flipped = (rng.uniform() < prob).view(-1, 1, 1, 1)
    return torch.where(flipped, x.flip(3), x)


def scale(x: Tensor, rng: Sampler, ratio: float = 1.2) -> Tensor:
    """Stretch each axis independently by a factor in [1/ratio, ratio]."""
    sx = rng.uniform() * (ratio - 1.0 / ratio) + 1.0 / ratio
    sy = rng.uniform() * (ratio - 1.0 / ratio) + 1.0 / ratio
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _warp(x, theta)


def rotate(x: Tensor, rng: Sampler, degrees: float = 15.0) -> Tensor:
    """Rotate by an angle uniform in ±degrees about the centre."""
    angle = (rng.uniform() - 0.5) * 2 * degrees * math.pi / 180
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(x, theta)


# ----------------------------------------------------------------------------- the augmenter


class DSA:
    """Seeded, siamese, differentiable augmentation: ``DSA()(x, seed)``.

    ``strategy`` names the ops joined by "_" (one is drawn per call), or "none" to return the
    input unchanged. The keyword ratios default to the DSA reference values.
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        *,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        crop: float = 0.125,
        cutout: float = 0.5,
        flip: float = 0.5,
        scale: float = 1.2,
        rotate: float = 15.0,
    ):
        self.strategy = strategy
        self.ops = _parse_strategy(strategy)
        if not 0.0 <= crop < 1.0:
            raise ConfigError(f"DSA crop ratio must be in [0, 1), got {crop}")
        if not 0.0 <= cutout <= 1.0:
            raise ConfigError(f"DSA cutout ratio must be in [0, 1], got {cutout}")
        if not 0.0 <= flip <= 1.0:
            raise ConfigError(f"DSA flip probability must be in [0, 1], got {flip}")
        if scale < 1.0:
            raise ConfigError(f"DSA scale ratio must be >= 1, got {scale}")
        self.ratios = dict(
            brightness=brightness, saturation=saturation, contrast=contrast, crop=crop,
            cutout=cutout, flip=flip, scale=scale, rotate=rotate,
        )  # fmt: skip

    def op_for(self, seed: int) -> str | None:
        """The op that ``seed`` selects (None for strategy "none"); handy for logging and tests."""
        return self._choose(_generator(seed))

    def __call__(self, x: Tensor, seed: int, siamese: bool = True) -> Tensor:
        """Augment an [N, C, H, W] float batch; same seed -> same op and parameters."""
        if not self.ops:
            return x
        if x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"DSA needs a float [N, C, H, W] batch, got {x.dtype} {list(x.shape)}")
        generator = _generator(seed)
        op = self._choose(generator)
        rng = Sampler(generator, x.shape[0], siamese, x.device, x.dtype)
        r = self.ratios
        if op == "color":
            return color(x, rng, r["brightness"], r["saturation"], r["contrast"])
        apply = {"crop": crop, "cutout": cutout, "flip": flip, "scale": scale, "rotate": rotate}[op]
        return apply(x, rng, r[op])

    def _choose(self, generator: torch.Generator) -> str | None:
        if not self.ops:
            return None
        return self.ops[int(torch.randint(len(self.ops), (1,), generator=generator))]

    def __repr__(self) -> str:
        return f"DSA(strategy={self.strategy!r})"


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _parse_strategy(strategy: str) -> tuple[str, ...]:
    if strategy is None or strategy.strip().lower() in ("", "none"):
        return ()
    ops = tuple(strategy.strip().split("_"))
    for op in ops:
        if op not in OPS:
            raise ConfigError(
                f"unknown DSA op {op!r} in strategy {strategy!r}; valid ops: {', '.join(OPS)} "
                f"(joined by '_'), or 'none'"
            )
    return ops
