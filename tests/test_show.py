"""`avdistill show`: pictures, WAVs that sound like the spectrogram, playable mp4 clips."""

from __future__ import annotations

import wave

import av
import numpy as np
import torch

import avdistill
from avdistill.cli import main
from avdistill.data.audio import MelParams, log_mel
from avdistill.reporting.sound import spectrogram_to_wave


def test_inverted_audio_reproduces_its_spectrogram():
    params = MelParams(n_mels=40)
    t = np.arange(params.clip_samples) / params.sample_rate
    chirp = np.sin(2 * np.pi * (300 + 1500 * t) * t) * (t > 0.2) * (t < 0.8)
    chirp += 1e-3 * np.random.default_rng(0).standard_normal(len(t))  # a noise floor, as in real recordings
    db = log_mel(torch.from_numpy(chirp).float(), params)
    again = log_mel(torch.from_numpy(spectrogram_to_wave(db, params)).float(), params)
    # Same shape of energy over time and frequency (the level is peak-normalised, so compare correlation).
    corr = np.corrcoef(db.flatten().numpy(), again.flatten().numpy())[0, 1]
    assert corr > 0.9


def test_show_writes_pictures_wavs_and_videos(tiny_dataset_file, tmp_path, capsys):
    before = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=0, out=tmp_path / "init", progress=False)
    syn = avdistill.distill(tiny_dataset_file, "dm", ipc=2, seed=0, out=tmp_path / "syn", iterations=3,
                            real_per_class=4, progress=False)
    assert torch.equal(before.labels, syn.labels)
    out = tmp_path / "show"
    assert main(["show", str(tmp_path / "syn" / "synthetic.safetensors"), "--before",
                 str(tmp_path / "init" / "synthetic.safetensors"), "--data", tiny_dataset_file.source_path,
                 "--out", str(out), "--quiet", "--griffin-lim-iters", "4"]) == 0
    for png in ("frames.png", "spectrograms.png", "losses.png", "embeddings.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wavs = sorted((out / "audio").glob("*.wav"))
    assert [w.name for w in wavs][:2] == ["00-c0-00.wav", "00-c0-01.wav"] and len(wavs) == len(syn.labels)
    mel = tiny_dataset_file.preprocessing.mel
    with wave.open(str(wavs[0])) as f:
        assert (f.getframerate(), f.getnframes(), f.getnchannels()) == (mel.sample_rate, mel.clip_samples, 1)
    videos = sorted((out / "video").glob("*.mp4"))
    assert len(videos) == len(syn.labels)
    with av.open(str(videos[0])) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        frame = next(container.decode(video=0))
        assert frame.width >= 256 and frame.height >= 256
    assert (out / "show.json").exists()
    assert "8 WAV and 8 mp4" in capsys.readouterr().out
