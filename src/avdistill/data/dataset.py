"""The paired audio-visual dataset every part of avdistill reads.

Storage keeps data as it comes out of preprocessing: log-mel spectrograms in dB and frames as
uint8 pixels. Models see *normalised* tensors; :class:`Preprocessing` holds the statistics that
map between the two, so synthetic sets (which live in model space) can be turned back into
pictures and sound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from avdistill.data.audio import MelParams
from avdistill.errors import ConfigError, DataError

# AVDD's frame statistics (on 0..1 pixels); AVDD leaves audio unnormalised.
AVDD_FRAME_MEAN = (0.425, 0.396, 0.370)
AVDD_FRAME_STD = (0.229, 0.224, 0.221)


@dataclass(frozen=True)
class Preprocessing:
    """How raw clips became tensors, and how tensors are normalised for the models."""

    mel: MelParams
    frame_size: tuple[int, int]
    frame_channels: int
    frame_mean: tuple[float, ...]
    frame_std: tuple[float, ...]
    audio_mean: float = 0.0
    audio_std: float = 1.0

    @property
    def audio_shape(self) -> tuple[int, int, int]:
        return (1, self.mel.n_mels, self.mel.n_frames)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.frame_channels, *self.frame_size)

    def audio_to_model(self, db: torch.Tensor) -> torch.Tensor:
        return (db.float() - self.audio_mean) / self.audio_std

    def audio_from_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.audio_std + self.audio_mean

    def frames_to_model(self, pixels: torch.Tensor) -> torch.Tensor:
        mean, std = self._frame_stats(pixels.device)
        return (pixels.float() / 255.0 - mean) / std

    def frames_from_model(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space frames -> float pixels in 0..255 (clamped)."""
        mean, std = self._frame_stats(x.device)
        return ((x.float() * std + mean) * 255.0).clamp(0, 255)

    def _frame_stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.frame_mean, device=device).view(-1, 1, 1)
        std = torch.tensor(self.frame_std, device=device).view(-1, 1, 1)
        return mean, std

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mel"] = self.mel.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        d = dict(d)
        d["mel"] = MelParams.from_dict(d["mel"])
        d["frame_size"] = tuple(d["frame_size"])
        d["frame_mean"] = tuple(d["frame_mean"])
        d["frame_std"] = tuple(d["frame_std"])
        return cls(**d)


@dataclass
class AVSplit:
    """One split: audio dB [N,1,F,T] (float16/32), frames uint8 [N,C,H,W], labels int64 [N]."""

    audio: torch.Tensor
    frames: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> "AVSplit":
        return AVSplit(self.audio[indices], self.frames[indices], self.labels[indices])

    def class_indices(self, num_classes: int) -> list[torch.Tensor]:
        """Indices of each class's samples, in dataset order."""
        return [torch.nonzero(self.labels == c).flatten() for c in range(num_classes)]


SPLIT_NAMES = ("train", "val", "test")


@dataclass
class AVDataset:
    """A named, paired AV dataset with a train and a test split, and optionally a validation split.

    `val` is carved out of the training pairs (:mod:`avdistill.data.split`): choices (learning
    rates, recipes, degradation strengths) are made on it, so the test split only reports.
    """

    name: str
    classes: list[str]
    train: AVSplit
    test: AVSplit
    val: AVSplit | None = field(default=None, kw_only=True)
    preprocessing: Preprocessing
    info: dict = field(default_factory=dict)
    source_path: str | None = None
    checksum: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> AVSplit:
        """The split called `name`: "train", "val" or "test"; a DataError when the dataset has no such split."""
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {name!r}; choose from {', '.join(SPLIT_NAMES)}")
        split = getattr(self, name)
        if split is None:
            raise DataError(self.source_path or self.name,
                            f"has no {name} split (prepare it again with --val-fraction to carve one from train)")
        return split

    def model_inputs(self, split: AVSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised float32 (audio, frames) and labels of `split`, as the encoders take them."""
        prep = self.preprocessing
        return prep.audio_to_model(split.audio), prep.frames_to_model(split.frames), split.labels.long()

    def describe(self) -> str:
        counts = torch.bincount(self.train.labels, minlength=self.num_classes).tolist()
        val = f"{len(self.val)} val / " if self.val is not None else ""
        return (
            f"{self.name}: {self.num_classes} classes, {len(self.train)} train / {val}{len(self.test)} test pairs; "
            f"audio {tuple(self.train.audio.shape[1:])}, frames {tuple(self.train.frames.shape[1:])}; "
            f"train per class {min(counts)}..{max(counts)}"
        )
