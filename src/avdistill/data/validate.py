"""Checks that turn malformed data into one clear error naming the file and the problem.

Everything that loads data calls :func:`check_split` before any tensor reaches a model, so a
bad file never surfaces as a shape error from deep inside torch.
"""

from __future__ import annotations

import torch

from avdistill.data.dataset import AVSplit
from avdistill.errors import DataError


def check_split(split: AVSplit, path, name: str, num_classes: int | None = None, scan_audio: bool = True) -> None:
    """Raise DataError(path, ...) unless `split` is a well-formed set of AV pairs.

    Shapes, dtypes, lengths and the label range are always checked (cheap: labels are small);
    `scan_audio` also reads every audio value for NaN/Inf (one pass over the audio).
    """
    audio, frames, labels = split.audio, split.frames, split.labels
    for key, t, rank in (("audio", audio, 4), ("frames", frames, 4), ("labels", labels, 1)):
        if not isinstance(t, torch.Tensor):
            raise DataError(path, f"{name} {key} is a {type(t).__name__}, expected a tensor")
        if t.dim() != rank:
            raise DataError(path, f"{name} {key} has rank {t.dim()} (shape {tuple(t.shape)}), expected rank {rank}")
    if audio.shape[1] != 1:
        raise DataError(path, f"{name} audio must be mono spectrograms [N,1,F,T], got shape {tuple(audio.shape)}")
    if frames.shape[1] not in (1, 3):
        raise DataError(path, f"{name} frames must have 1 or 3 channels [N,C,H,W], got shape {tuple(frames.shape)}")
    n = {"audio": audio.shape[0], "frames": frames.shape[0], "labels": labels.shape[0]}
    if len(set(n.values())) != 1:
        raise DataError(path, f"{name} has mismatched lengths: " + ", ".join(f"{k} {v}" for k, v in n.items()))
    if n["labels"] == 0:
        raise DataError(path, f"{name} split is empty")
    if not audio.dtype.is_floating_point:
        raise DataError(path, f"{name} audio has dtype {audio.dtype}, expected floating point (log-mel dB)")
    if frames.dtype != torch.uint8:
        raise DataError(path, f"{name} frames have dtype {frames.dtype}, expected uint8 pixels")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise DataError(path, f"{name} labels have dtype {labels.dtype}, expected integers")
    if scan_audio:
        check_finite(audio, path, name)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise DataError(path, f"{name} labels range over {low}..{high}, outside {limit}")


def check_finite(audio, path, name: str) -> None:
    """DataError(path, ...) naming the first sample of `audio` that holds NaN or Inf."""
    first = first_nonfinite(audio)
    if first is not None:
        raise DataError(path, f"{name} audio holds NaN or Inf values (first at sample {first})")


def first_nonfinite(x: torch.Tensor, chunk: int = 4096) -> int | None:
    """Index of the first sample of `x` [N, ...] holding NaN or Inf, or None.

    Scans `chunk` samples at a time, so a large split never needs a full-size mask: the
    temporaries stay at a few MB whatever N is. `x` may be anything with ``shape`` whose
    slices along dim 0 are tensors (storage scans a mapped file's rows with plain reads).
    """
    for start in range(0, x.shape[0], chunk):
        bad = ~torch.isfinite(x[start:start + chunk]).flatten(1).all(1)
        if bad.any():
            return start + int(torch.nonzero(bad)[0])
    return None


def check_same_layout(train: AVSplit, other: AVSplit, path, name: str = "test") -> None:
    """Train and the `name` split's samples must have the same per-sample shapes."""
    for key in ("audio", "frames"):
        a, b = getattr(train, key).shape[1:], getattr(other, key).shape[1:]
        if a != b:
            raise DataError(path, f"train {key} samples have shape {tuple(a)} but {name} {key} samples {tuple(b)}")


def pixels_to_uint8(frames: torch.Tensor, path, name: str) -> torch.Tensor:
    """Accept 0..255 pixels in any numeric dtype (AVDD stores floats) and return uint8."""
    if frames.dtype == torch.uint8:
        return frames
    if not frames.dtype.is_floating_point and frames.dtype not in (torch.int16, torch.int32, torch.int64):
        raise DataError(path, f"{name} frames have dtype {frames.dtype}, expected 0..255 pixels")
    f = frames.float()
    if not f.numel():
        return f.to(torch.uint8)  # no pixels to check; check_split reports the empty split
    if not torch.isfinite(f).all():
        raise DataError(path, f"{name} frames hold NaN or Inf values")
    low, high = float(f.min()), float(f.max())
    if low < 0 or high > 255:
        raise DataError(path, f"{name} frames range over {low:g}..{high:g}, expected 0..255 pixels")
    return f.round().to(torch.uint8)
