"""The IDM factor technique: each stored synthetic sample is a factor x factor grid of smaller samples.

Storage stays IPC full-size samples per class, but the set trains (and is matched) as
IPC * factor² samples: every stored sample is cut into its grid cells and each cell is
upsampled back to full size (bilinear) -> factor² training samples with the same label.
Initialisation does the reverse: factor² real samples are downscaled into one stored sample.

Decisions (open in the sources): cell borders are ``round(i * size / factor)``, so odd sizes
(e.g. 21 spectrogram frames) split into cells that differ by one row; downscaling uses bilinear
interpolation with antialiasing (an area-like average, so a downscaled real sample keeps its
content rather than aliasing); upscaling is plain bilinear (``align_corners=False``) as in IDM.
Expansion orders samples stored-sample-major: cells of sample 0 row by row, then sample 1, ...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avdistill.errors import ConfigError


MAX_FACTOR = 8


def check_factor(factor: int) -> None:
    if not 1 <= factor <= MAX_FACTOR:
        raise ConfigError(f"factor must be between 1 and {MAX_FACTOR}, got {factor}")


def cell_bounds(size: int, factor: int) -> list[tuple[int, int]]:
    """[start, stop) of each of the `factor` cells along one axis of length `size`."""
    if size < factor:
        raise ConfigError(f"cannot split a side of {size} pixels into {factor} cells; lower the factor")
    edges = [round(i * size / factor) for i in range(factor + 1)]
    return list(zip(edges[:-1], edges[1:]))


def expand(x: torch.Tensor, factor: int) -> torch.Tensor:
    """[M, C, H, W] stored samples -> [M * factor², C, H, W] training samples (differentiable)."""
    if factor == 1:
        return x
    H, W = x.shape[-2:]
    cells = [F.interpolate(x[:, :, r0:r1, c0:c1], size=(H, W), mode="bilinear", align_corners=False)
             for r0, r1 in cell_bounds(H, factor) for c0, c1 in cell_bounds(W, factor)]
    return torch.stack(cells, dim=1).flatten(0, 1)


def expand_labels(labels: torch.Tensor, factor: int) -> torch.Tensor:
    """Labels matching :func:`expand`: each label repeated factor² times in place."""
    return labels.repeat_interleave(factor * factor)


def pack(x: torch.Tensor, factor: int) -> torch.Tensor:
    """[M * factor², C, H, W] full-size samples -> [M, C, H, W] stored samples (the inverse layout of :func:`expand`)."""
    if factor == 1:
        return x.clone()
    n = factor * factor
    if len(x) % n:
        raise ConfigError(f"{len(x)} samples cannot be packed {n} to a stored sample")
    H, W = x.shape[-2:]
    out = x.new_empty(len(x) // n, *x.shape[1:])
    groups = x.view(len(x) // n, n, *x.shape[1:])
    cells = [(r, c) for r in cell_bounds(H, factor) for c in cell_bounds(W, factor)]
    for k, ((r0, r1), (c0, c1)) in enumerate(cells):
        out[:, :, r0:r1, c0:c1] = F.interpolate(groups[:, k], size=(r1 - r0, c1 - c0), mode="bilinear",
                                                align_corners=False, antialias=True)
    return out
