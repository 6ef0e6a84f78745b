"""A generated dataset of VGGSound-10K's shapes, for timing the `avdd` encoders at full size.

AVDD's VGGS-10K inputs: 1x128x56 log-mel spectrograms (11 kHz, hop 200) and 3x224x224 frames.
Timing needs the shapes, not the content: random dB values and pixels, in memory, labelled
round-robin. The checksum is a digest of the tensors, so avdistill's caches key on it as they do
on a prepared dataset (and a fresh temporary cache starts cold).
"""

from __future__ import annotations

import hashlib

import torch

from avdistill.data.audio import MelParams
from avdistill.data.dataset import AVDD_FRAME_MEAN, AVDD_FRAME_STD, AVDataset, AVSplit, Preprocessing


def vggs_shaped(classes: int = 10, per_class: int = 128, test_per_class: int = 8, seed: int = 0) -> AVDataset:
    """`classes` x `per_class` training pairs (and a small test split) of VGGS-10K's shapes."""
    g = torch.Generator().manual_seed(seed)
    prep = Preprocessing(mel=MelParams(), frame_size=(224, 224), frame_channels=3, frame_mean=AVDD_FRAME_MEAN,
                         frame_std=AVDD_FRAME_STD)

    def split(n: int) -> AVSplit:
        labels = torch.arange(n * classes) % classes
        audio = (torch.randn(len(labels), *prep.audio_shape, generator=g) * 20 - 40).half()
        frames = torch.randint(0, 256, (len(labels), *prep.frame_shape), generator=g, dtype=torch.uint8)
        return AVSplit(audio, frames, labels)

    train, test = split(per_class), split(test_per_class)
    digest = hashlib.sha256()
    for t in (train.audio, train.frames, train.labels, test.audio, test.frames, test.labels):
        digest.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return AVDataset(f"vggs-shaped-{classes}x{per_class}", [f"class{c}" for c in range(classes)], train, test, prep,
                     checksum=digest.hexdigest())
