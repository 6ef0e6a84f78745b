"""Small datasets made in the test: class-dependent patterns plus noise, so learning is possible."""

from __future__ import annotations

import pytest
import torch

from avdistill.data.audio import MelParams
from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.storage import save_dataset


def make_split(n_per_class: int, num_classes: int, seed: int, n_mels: int = 16, n_frames: int = 21,
               size: int = 16) -> AVSplit:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    audio = torch.randn(len(labels), 1, n_mels, n_frames, generator=g) * 5 - 40
    frames = torch.randint(0, 60, (len(labels), 1, size, size), generator=g)
    for c in range(num_classes):  # class c: a loud mel band and a bright row
        audio[labels == c, :, (c * 3) % n_mels] += 30
        frames[labels == c, :, (c * 4) % size] += 180
    return AVSplit(audio=audio, frames=frames.clamp(0, 255).to(torch.uint8), labels=labels)


def make_dataset(num_classes: int = 4, train_per_class: int = 12, test_per_class: int = 5, seed: int = 0) -> AVDataset:
    prep = Preprocessing(mel=MelParams(n_mels=16, clip_samples=4000), frame_size=(16, 16), frame_channels=1,
                         frame_mean=(0.2,), frame_std=(0.3,), audio_mean=-40.0, audio_std=10.0)
    return AVDataset(name="tiny", classes=[f"c{i}" for i in range(num_classes)],
                     train=make_split(train_per_class, num_classes, seed),
                     test=make_split(test_per_class, num_classes, seed + 1),
                     preprocessing=prep, info={"made_by": "tests"})


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Every test gets its own empty user cache (real statistics, banks, experts), never ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache" / "avdistill"


@pytest.fixture
def tiny_dataset() -> AVDataset:
    return make_dataset()


@pytest.fixture
def tiny_dataset_file(tmp_path):
    """A prepared dataset on disk, loaded back (so it has a path and a checksum)."""
    from avdistill.data.storage import load_prepared

    path = save_dataset(make_dataset(), tmp_path / "tiny.safetensors")
    return load_prepared(path)
