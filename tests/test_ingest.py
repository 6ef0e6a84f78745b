"""Media ingestion on real H.264 + AAC clips made with PyAV: decoding, sources, skip report, resume."""

from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import torch

from avdistill.cli import main
from avdistill.data import load_dataset
from avdistill.data.audio import MelParams, log_mel
from avdistill.data.ingest import DecodeParams, assign_splits, ave_clips, csv_clips, decode_windows, folder_clips
from avdistill.data.ingest.prepare import manifest_path_for, prepare_clips, work_dir_for
from avdistill.errors import ConfigError, DataError
from media import class_colour, tone_hz, write_clip, write_not_media, write_truncated

SMALL = DecodeParams(frame_size=(16, 16))


def reference_log_mel(wave: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """torchaudio MelSpectrogram defaults + AmplitudeToDB(power), written out in NumPy from the definition."""
    wave = np.pad(wave[:sr], (0, max(0, sr - len(wave))))
    x = np.pad(wave, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([x[i * hop: i * hop + n_fft] * window for i in range(1 + sr // hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    hz_to_mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731  (HTK)
    mel_to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    f_pts = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    up = (freqs[None] - f_pts[:-2, None]) / (f_pts[1:-1] - f_pts[:-2])[:, None]
    down = (f_pts[2:, None] - freqs[None]) / (f_pts[2:] - f_pts[1:-1])[:, None]
    fb = np.maximum(0, np.minimum(up, down))  # no area normalisation
    return 10 * np.log10(np.maximum(fb @ power.T, 1e-10))


def test_log_mel_matches_definition_at_avdd_defaults():
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(10_500)).astype(np.float64)  # shorter than a second: zero-padded
    got = log_mel(torch.from_numpy(wave).float(), MelParams()).numpy()
    assert got.shape == (128, 56)
    np.testing.assert_allclose(got, reference_log_mel(wave, 11000, 400, 200, 128), atol=2e-3)


def test_decoded_window_shapes_frame_choice_and_audio(tmp_path):
    path = write_clip(tmp_path / "c.mp4", label=2, seconds=2.0, size=32, channels=2)
    middle, kth = decode_windows(path, (0.0, 1.0), DecodeParams(frame_size=(32, 32)))
    assert middle[0].shape == (1, 128, 56) and middle[0].dtype == torch.float32
    assert middle[1].shape == (3, 32, 32) and middle[1].dtype == torch.uint8
    frame_at = lambda pixels: round(float(pixels[:, 20:].float().mean()) / 5)  # noqa: E731  (see media.frame_grey)
    assert frame_at(middle[1]) == 12 and frame_at(kth[1]) == 37  # on screen at 0.5 s and 1.5 s (25 fps)
    colour = middle[1][:, :12].float().mean(dim=(1, 2))
    assert torch.allclose(colour, torch.tensor(class_colour(2)).float() + 5.5, atol=8)
    # the k-th of n frames at n fps: AVE's 4th of 8 at 8 fps is the frame on screen at 0.375 s
    (_, frame), = decode_windows(path, (0.0,), DecodeParams(frame_size=(32, 32), frame_fps=8, frame_index=3))
    assert frame_at(frame) == 9
    # the loudest mel band is the class tone's, and the window equals log_mel of the independently decoded mono audio
    mel = MelParams()
    hz = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 5500 / 700), 130) / 2595) - 1)
    assert abs(hz[1 + int(middle[0][0].mean(1).argmax())] - tone_hz(2)) < 60
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="fltp", rate=11000)
        wave = np.concatenate([o.to_ndarray().mean(0) for f in c.decode(audio=0) for o in resampler.resample(f)])
    np.testing.assert_allclose(middle[0][0].numpy(), log_mel(torch.from_numpy(wave[:11000]), mel).numpy(), atol=1e-3)
    np.testing.assert_allclose(kth[0][0].numpy(), log_mel(torch.from_numpy(wave[11000:22000]), mel).numpy(), atol=1e-3)


def test_short_clip_is_skipped_but_a_small_gap_is_padded(tmp_path):
    assert isinstance(decode_windows(write_clip(tmp_path / "s.mp4", seconds=0.4), (0.0,), SMALL)[0], str)
    db, _ = decode_windows(write_clip(tmp_path / "p.mp4", seconds=0.96), (0.0,), SMALL)[0]
    assert db.shape == (1, 128, 56)
    (reason,) = decode_windows(write_clip(tmp_path / "l.mp4", seconds=1.0), (1.0,), SMALL)
    assert "window at 1 s" in reason


def test_a_file_cut_mid_stream_keeps_the_windows_before_the_cut(tmp_path):
    path = write_truncated(tmp_path / "cut.mp4", keep=0.6, seconds=3.0, size=16, faststart=True)
    first, *rest = decode_windows(path, (0.0, 1.0, 2.0), SMALL)
    assert first[0].shape == (1, 128, 56)
    assert rest and all(isinstance(r, str) for r in rest)


def make_folder(root, per_class=4, classes=3):
    """Good clips plus every kind of broken one; returns the names the skip report must list."""
    for c in range(classes):
        for i in range(per_class):
            write_clip(root / f"c{c}" / f"clip{i}.mp4", label=c, seed=i, size=16, sample_rate=11025)
    broken = {
        "c0/truncated.mp4": "cannot open",
        "c0/text.mp4": "cannot open",
        "c1/no_audio.mp4": "no audio track",
        "c1/no_video.mp4": "no video track",
        "c2/empty.mp4": "empty file",
        "c2/short.mp4": "shorter than the window",
        "c2/clip.txt": "not a video extension",
        "zebra/clip0.mp4": "unknown label",
    }
    write_truncated(root / "c0/truncated.mp4", size=16)
    write_not_media(root / "c0/text.mp4")
    write_clip(root / "c1/no_audio.mp4", audio=False, size=16)
    write_clip(root / "c1/no_video.mp4", video=False)
    (root / "c2/empty.mp4").write_bytes(b"")
    write_clip(root / "c2/short.mp4", seconds=0.4, size=16)
    write_clip(root / "c2/clip.txt", label=2, size=16)
    write_clip(root / "zebra/clip0.mp4", size=16)
    return broken


def test_prepare_folder_reports_exactly_the_broken_clips(tmp_path, capsys):
    broken = make_folder(tmp_path / "clips")
    out = tmp_path / "out" / "clips.safetensors"
    code = main(["prepare", "--folder", str(tmp_path / "clips"), "--out", str(out), "--classes", "c0,c1,c2",
                 "--frame-size", "16", "--workers", "2", "--test-fraction", "0.25", "--quiet"])
    assert code == 0
    dataset = load_dataset(out)
    assert dataset.classes == ["c0", "c1", "c2"]
    assert dataset.train.audio.shape[1:] == (1, 128, 56) and dataset.train.frames.shape[1:] == (3, 16, 16)
    assert torch.bincount(dataset.train.labels).tolist() == [2, 2, 2]  # 3 per class minus the val carve (0.1:
    assert torch.bincount(dataset.val.labels).tolist() == [1, 1, 1]  # at least one clip of each class)
    assert torch.bincount(dataset.test.labels).tolist() == [1, 1, 1]
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest == json.loads(json.dumps(dataset.info["manifest"]))
    assert {s["file"]: s["reason"] for s in manifest["skipped"]}.keys() == broken.keys()
    for skip in manifest["skipped"]:
        assert broken[skip["file"]] in skip["reason"]
    assert manifest["counts"] == {"train": {"c0": 2, "c1": 2, "c2": 2}, "val": {"c0": 1, "c1": 1, "c2": 1},
                                  "test": {"c0": 1, "c1": 1, "c2": 1}}
    assert manifest["parameters"]["frame_size"] == [16, 16] and "torch" in manifest["versions"]
    assert not work_dir_for(out).exists()
    printed = capsys.readouterr().out
    assert all(name in printed for name in broken)
    audio, frames, labels = dataset.model_inputs(dataset.test)  # consumable by the models
    assert torch.isfinite(audio).all() and frames.dtype == torch.float32


def test_resume_decodes_only_missing_clips_and_gives_the_same_dataset(tmp_path, capsys):
    for c in range(2):
        for i in range(3):
            write_clip(tmp_path / "clips" / f"c{c}" / f"{i}.mp4", label=c, seed=i, size=16, sample_rate=11025)
    write_clip(tmp_path / "clips" / "c1" / "short.mp4", seconds=0.3, size=16)
    clips, skips, source = folder_clips(tmp_path / "clips")
    fresh = prepare_clips(clips, skips, source, tmp_path / "fresh.safetensors", SMALL, progress=False)
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(DataError, match="too few usable train samples"):  # stops after decoding everything
        prepare_clips(clips, skips, source, out, SMALL, min_per_class=10, progress=False)
    results = sorted(work_dir_for(out).glob("*.safetensors"))
    assert len(results) == 7
    for lost in results[:3]:  # as if the run had been interrupted before these were written
        lost.unlink()
    kept = {p: p.stat().st_mtime_ns for p in results[3:]}
    with pytest.raises(ConfigError, match="other parameters"):
        prepare_clips(clips, skips, source, out, DecodeParams(frame_size=(8, 8)), progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished clips are not redone
    resumed = prepare_clips(clips, skips, source, out, SMALL, progress=False)
    assert "resuming: 4 of 7 clips already decoded" in capsys.readouterr().out
    for split in ("train", "test"):
        for key in ("audio", "frames", "labels"):
            assert torch.equal(getattr(getattr(fresh, split), key), getattr(getattr(resumed, split), key))
    assert [s["file"] for s in resumed.info["manifest"]["skipped"]] == ["c1/short.mp4"]


def test_csv_source(tmp_path):
    for vid, label in (("a", 0), ("b", 1), ("c", 0)):
        write_clip(tmp_path / "v" / f"{vid}_000030.mp4", label=label, size=16)
    (tmp_path / "list.csv").write_text(
        "video_id,start_seconds,label,split\n"
        "a,30,dog barking,train\n" "b,30.0,\"cat, purring\",test\n" "c,30,dog barking,test\n"
        "gone,10,dog barking,train\n" "a,30,dog barking,val\n" "oops\n")
    clips, skips, _ = csv_clips(tmp_path / "list.csv", tmp_path / "v", offset=0.0)
    assert [(c.name, c.label, c.split) for c in clips] == [
        ("a_000030.mp4", "dog barking", "train"), ("b_000030.mp4", "cat, purring", "test"),
        ("c_000030.mp4", "dog barking", "test")]
    assert [s.reason.split(" (")[0] for s in skips] == ["missing file", "unknown split 'val'", "malformed row"]
    with pytest.raises(ConfigError, match="video_id"):
        csv_clips(tmp_path / "list.csv", tmp_path / "v", pattern="{youtube_id}.mp4")
    out = tmp_path / "vggs.safetensors"
    assert main(["prepare", "--csv", str(tmp_path / "list.csv"), "--video-dir", str(tmp_path / "v"), "--out", str(out),
                 "--frame-size", "8x12", "--grayscale", "--min-per-class", "0", "--workers", "1", "--quiet"]) == 0
    dataset = load_dataset(out)
    assert dataset.classes == ["cat, purring", "dog barking"] and dataset.train.frames.shape[1:] == (1, 8, 12)
    assert dataset.train.labels.tolist() == [1] and dataset.test.labels.tolist() == [0, 1]
    assert len(dataset.info["manifest"]["skipped"]) == 3


def test_ave_source_takes_every_second_of_an_event(tmp_path):
    write_clip(tmp_path / "v" / "x.mp4", label=0, seconds=3.0, size=16, sample_rate=11025)
    write_clip(tmp_path / "v" / "y.mp4", label=1, seconds=3.0, size=16, sample_rate=11025)
    (tmp_path / "train.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\nBell&x&good&0&2\nDog&y&good&1&4\n")
    (tmp_path / "test.txt").write_text("Bell&x&good&2&3\nDog&y&good&0&1\n")
    clips, skips, source = ave_clips([tmp_path / "train.txt", tmp_path / "test.txt"], tmp_path / "v")
    assert [c.offsets for c in clips] == [(0.0, 1.0), (1.0, 2.0, 3.0), (2.0,), (0.0,)]
    dataset = prepare_clips(clips, skips, source, tmp_path / "ave.safetensors",
                            DecodeParams(frame_size=(16, 16), frame_fps=8, frame_index=3), progress=False)
    assert dataset.classes == ["Bell", "Dog"]
    assert dataset.train.labels.tolist() == [0, 0, 1, 1] and dataset.test.labels.tolist() == [0, 1]
    (skip,) = dataset.info["manifest"]["skipped"]
    assert skip["file"] == "y.mp4" and skip["offset"] == 3.0  # the second past the video's end


def test_validation_split_keeps_each_video_on_one_side(tmp_path):
    """AVE windows of one video are one group: the val split takes whole videos (2 or 3 windows), per class."""
    lines = ["Bell&x&good&0&2", "Bell&z&good&0&3", "Bell&w&good&0&3", "Dog&y&good&0&3", "Dog&u&good&0&2",
             "Dog&t&good&0&3"]
    for line in lines:
        label, name, _, _, end = line.split("&")
        write_clip(tmp_path / "v" / f"{name}.mp4", label=int(label == "Dog"), seconds=float(end), size=16,
                   sample_rate=11025)
    (tmp_path / "train.txt").write_text("\n".join(lines[:2] + lines[3:5]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join([lines[2], lines[5]]) + "\n")
    clips, skips, source = ave_clips([tmp_path / "train.txt", tmp_path / "test.txt"], tmp_path / "v")
    dataset = prepare_clips(clips, skips, source, tmp_path / "ave.safetensors", DecodeParams(frame_size=(16, 16)),
                            val_fraction=0.4, seed=3, progress=False)
    val, train = torch.bincount(dataset.val.labels, minlength=2), torch.bincount(dataset.train.labels, minlength=2)
    assert val.tolist() in ([2, 3], [3, 3], [2, 2], [3, 2])  # whole videos only, one per class
    assert (val + train).tolist() == [5, 5]
    assert load_dataset(tmp_path / "ave.safetensors").val.labels.tolist() == dataset.val.labels.tolist()


def test_seeded_split_is_stratified_and_reproducible(tmp_path):
    from avdistill.data.ingest import Clip

    clips = [Clip(tmp_path / f"{c}{i}", f"{c}/{i}", c, None, (0.0,)) for c in "ab" for i in range(10)]
    first = assign_splits(clips, 0.3, seed=0)
    assert first == assign_splits(list(reversed(clips)), 0.3, seed=0)[::-1]
    for c in "ab":
        assert sum(x.split == "test" for x in first if x.label == c) == 3
    assert first != assign_splits(clips, 0.3, seed=1)
    assert all(x.split == "train" for x in assign_splits(clips[:1], 0.3, seed=0))


def test_too_few_clips_in_a_class_is_a_clear_error(tmp_path, capsys):
    write_clip(tmp_path / "clips" / "train" / "a" / "0.mp4", size=16)
    write_clip(tmp_path / "clips" / "test" / "a" / "0.mp4", size=16)
    write_truncated(tmp_path / "clips" / "train" / "b" / "0.mp4", size=16)
    write_clip(tmp_path / "clips" / "test" / "b" / "0.mp4", size=16)
    out = tmp_path / "d.safetensors"
    code = main(["prepare", "--folder", str(tmp_path / "clips"), "--out", str(out), "--frame-size", "16",
                 "--workers", "1", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "too few usable train samples" in err and "'b' (0)" in err
    assert not out.exists()


def test_bad_options_are_clear(tmp_path, capsys):
    assert main(["prepare", "--folder", str(tmp_path), "--csv", "x.csv", "--out", str(tmp_path / "o")]) == 2
    assert "exactly one source" in capsys.readouterr().err
    assert main(["prepare", "--folder", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="frame-index"):
        DecodeParams(frame_fps=8, frame_index=8)
    assert os.listdir(tmp_path) == []
