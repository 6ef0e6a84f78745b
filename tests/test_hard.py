"""AV-Digits-Hard: deterministic, label-preserving degradation of both modalities, same splits."""

from __future__ import annotations

import torch

from avdistill.data import load_dataset
from avdistill.data.hard import Degradation, degrade_audio, degrade_frames, interferers
from avdistill.seeding import generator


def test_interferers_are_of_another_class():
    labels = torch.arange(5).repeat(7)
    pick = interferers(labels, generator(0, "degrade"))
    assert (labels[pick] != labels).all() and pick.min() >= 0 and pick.max() < len(labels)


def test_degradations_mix_in_power_and_pixels_as_documented():
    g = lambda: generator(1, "degrade")  # noqa: E731
    db = torch.full((4, 1, 3, 5), -20.0)
    labels = torch.tensor([0, 1, 0, 1])
    silent = Degradation(audio_interferer_db=200.0, audio_noise_db=200.0)  # both 200 dB down: nothing added
    assert torch.allclose(degrade_audio(db, labels, silent, g()), db)
    loud = Degradation(audio_interferer_db=0.0, audio_noise_db=200.0)  # an equal interferer doubles the power
    assert torch.allclose(degrade_audio(db, labels, loud, g()), db + 10 * torch.log10(torch.tensor(2.0)), atol=1e-6)
    frames = torch.tensor([0, 200, 0, 200], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 4, 4).contiguous()
    ghost = degrade_frames(frames, labels, Degradation(frame_interferer=0.25, frame_noise_std=0.0), g())
    assert ghost[labels == 0].eq(50).all() and ghost[labels == 1].eq(150).all()  # 0.75 x own + 0.25 x other class


def test_hard_dataset_is_deterministic_and_keeps_splits_and_labels():
    easy, hard = load_dataset("av-digits"), load_dataset("av-digits-hard")
    assert hard.name == "av-digits-hard" and hard.checksum != easy.checksum
    for split in ("train", "val", "test"):
        a, b = easy.split(split), hard.split(split)
        assert torch.equal(a.labels, b.labels) and a.audio.shape == b.audio.shape
        assert a.audio.dtype == b.audio.dtype and b.frames.dtype == torch.uint8
        assert (a.audio != b.audio).float().mean() > 0.9 and (a.frames != b.frames).float().mean() > 0.5
    again = load_dataset("av-digits-hard")
    assert again.checksum == hard.checksum and torch.equal(again.test.frames, hard.test.frames)
    assert hard.info["degradation"]["version"] and hard.preprocessing.frame_mean != easy.preprocessing.frame_mean
