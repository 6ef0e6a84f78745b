"""`avdistill show`: pictures, WAVs that sound like the spectrogram, playable mp4 clips."""

from __future__ import annotations

import wave

import av
import numpy as np
import torch
from pngs import is_png, picture_rows

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
        assert is_png(out / png)
    assert picture_rows(out / "frames.png") == picture_rows(out / "spectrograms.png") == len(syn.classes)
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


def test_wav_and_mp4_decode_back_to_the_distilled_pair(tiny_dataset, tmp_path):
    """Decode the files with other readers (soundfile, PyAV): right length and rate, not silent, and the
    sound is the spectrogram it came from (its log-mel correlates with the source more than with any other)."""
    import librosa
    import soundfile

    from avdistill.reporting.pictures import frames_as_images
    from avdistill.reporting.show import show
    from avdistill.reporting.video import AAC_RATE, FPS

    syn = avdistill.distill(tiny_dataset, "dm", ipc=2, seed=0, iterations=3, real_per_class=4, progress=False)
    written = show(syn, tmp_path / "show", griffin_lim_iters=8, progress=False, clips_per_class=1)
    mel = syn.preprocessing.mel
    source = syn.preprocessing.audio_from_model(syn.audio)[:, 0].flatten(1).numpy()
    firsts = [int((syn.labels == c).nonzero()[0]) for c in range(len(syn.classes))]  # one clip per class
    assert len(written["audio"]) == len(written["video"]) == len(firsts)
    images = frames_as_images(syn)
    for i, wav_path, mp4_path in zip(firsts, written["audio"], written["video"]):
        samples, rate = soundfile.read(wav_path)
        assert (rate, len(samples)) == (mel.sample_rate, mel.clip_samples)
        assert np.sqrt(np.mean(samples ** 2)) > 0.05  # peak-normalised sound, not silence
        again = log_mel(torch.from_numpy(samples).float(), mel).flatten().numpy()
        corr = [np.corrcoef(again, s)[0, 1] for s in source]
        assert corr[i] > 0.7 and corr[i] == max(corr)

        with av.open(mp4_path) as container:
            audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)[0]
            assert container.streams.audio[0].rate == AAC_RATE
        with av.open(mp4_path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        seconds = mel.clip_samples / mel.sample_rate
        assert seconds <= len(audio) / AAC_RATE <= seconds + 2048 / AAC_RATE  # AAC pads to whole 1024-sample frames
        assert len(frames) == round(seconds * FPS)
        back = librosa.resample(audio.astype(np.float64), orig_sr=AAC_RATE, target_sr=mel.sample_rate)
        assert np.corrcoef(back[: len(samples)], samples)[0, 1] > 0.95
        scale = frames[0].shape[0] // images[i].shape[0]  # nearest-neighbour upscaling: sample the block centres
        small = frames[0][scale // 2::scale, scale // 2::scale][: images[i].shape[0], : images[i].shape[1]]
        assert np.abs(small.astype(float) - images[i]).mean() < 12  # H.264 is lossy, the picture is the frame


def test_packed_sets_are_heard_unpacked(tiny_dataset, tmp_path):
    """With the IDM factor the sound is each full-size training clip, not the packed 2x2 spectrogram."""
    import soundfile

    from avdistill.reporting.show import show

    syn = avdistill.distill(tiny_dataset, "avdd", ipc=1, seed=0, iterations=1, real_per_class=2, herding_epochs=1,
                            progress=False)
    assert syn.factor == 2
    written = show(syn, tmp_path / "show", videos=False, griffin_lim_iters=8, progress=False)
    audio, _, labels = syn.training_pairs()
    assert len(written["audio"]) == len(labels) == 4 * len(syn.labels)
    source = syn.preprocessing.audio_from_model(audio)[:, 0].flatten(1).numpy()
    samples, _ = soundfile.read(written["audio"][1])
    again = log_mel(torch.from_numpy(samples).float(), syn.preprocessing.mel).flatten().numpy()
    corr = [np.corrcoef(again, s)[0, 1] for s in source]
    assert corr[1] == max(corr) and corr[1] > 0.7
