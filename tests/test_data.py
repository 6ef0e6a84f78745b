"""Data formats: prepared-dataset round trip, AVDD .pt loading, and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

from avdistill.cli import main
from avdistill.data import load_avdd, load_dataset, load_prepared, save_dataset
from avdistill.data.audio import MelParams, log_mel
from avdistill.errors import DataError
from conftest import make_dataset


def avdd_dict(n_train=8, n_test=4, classes=2):
    g = torch.Generator().manual_seed(0)
    return {
        "audio_train": torch.randn(n_train, 1, 128, 56, generator=g) * 10 - 30,
        "images_train": torch.randint(0, 256, (n_train, 3, 24, 24), generator=g).float(),
        "labels_train": torch.arange(n_train) % classes,
        "audio_test": torch.randn(n_test, 1, 128, 56, generator=g) * 10 - 30,
        "images_test": torch.randint(0, 256, (n_test, 3, 24, 24), generator=g).float(),
        "labels_test": torch.arange(n_test) % classes,
    }


def test_prepared_round_trip_and_mmap(tmp_path):
    dataset = make_dataset()
    path = save_dataset(dataset, tmp_path / "d.safetensors")
    for mmap in (False, True):
        loaded = load_prepared(path, mmap=mmap)
        assert loaded.classes == dataset.classes
        assert loaded.preprocessing == dataset.preprocessing
        for split in ("train", "test"):
            for key in ("audio", "frames", "labels"):
                assert torch.equal(getattr(getattr(loaded, split), key), getattr(getattr(dataset, split), key))
        assert len(loaded.checksum) == 64


def test_avdd_round_trip_through_prepare(tmp_path):
    data = avdd_dict()
    torch.save(data, tmp_path / "train.pt")
    out = tmp_path / "prepared.safetensors"
    assert main(["prepare", str(tmp_path / "train.pt"), "--out", str(out), "--classes", "dog,cat",
                 "--val-fraction", "0"]) == 0
    dataset = load_dataset(out)
    assert dataset.classes == ["dog", "cat"] and dataset.val is None
    assert dataset.train.frames.dtype == torch.uint8
    assert torch.equal(dataset.train.frames.float(), data["images_train"])
    assert torch.equal(dataset.test.audio, data["audio_test"])
    assert torch.equal(dataset.train.labels, data["labels_train"])
    # AVDD conventions: frames /255 then AVDD mean/std; audio untouched.
    audio, frames, _ = dataset.model_inputs(dataset.train)
    assert torch.allclose(audio, data["audio_train"])
    expected = (data["images_train"][:, 0] / 255 - 0.425) / 0.229
    assert torch.allclose(frames[:, 0], expected, atol=1e-5)


def test_avdd_split_files(tmp_path):
    data = avdd_dict()
    torch.save({k: v for k, v in data.items() if k.endswith("_train")}, tmp_path / "train.pt")
    torch.save({k: v for k, v in data.items() if k.endswith("_test")}, tmp_path / "test.pt")
    dataset = load_avdd(tmp_path / "train.pt", tmp_path / "test.pt")
    assert len(dataset.train) == 8 and len(dataset.test) == 4
    assert dataset.preprocessing.mel == MelParams()  # 128 x 56 at 11 kHz: AVDD's defaults


def _corrupt(data, case):
    if case == "missing key":
        del data["labels_train"]
    elif case == "mismatched lengths":
        data["labels_train"] = data["labels_train"][:-1]
    elif case == "NaN":
        data["audio_train"][3, 0, 5, 5] = float("nan")
    elif case == "negative label":
        data["labels_train"][0] = -1
    elif case == "wrong rank":
        data["audio_train"] = data["audio_train"][:, 0]
    elif case == "pixels out of range":
        data["images_test"][0] = 300.0
    return data


@pytest.mark.parametrize("case, words", [
    ("missing key", "missing keys labels_train"),
    ("mismatched lengths", "mismatched lengths"),
    ("NaN", "NaN"),
    ("negative label", "labels range"),
    ("wrong rank", "rank 3"),
    ("pixels out of range", "0..255"),
])
def test_bad_avdd_input_names_file_and_problem_and_writes_nothing(tmp_path, capsys, case, words):
    bad = tmp_path / "bad.pt"
    torch.save(_corrupt(avdd_dict(), case), bad)
    with pytest.raises(DataError) as err:
        load_avdd(bad)
    assert str(bad) in str(err.value) and words in str(err.value)
    out = tmp_path / "out.safetensors"
    assert main(["prepare", str(bad), "--out", str(out)]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temp file


def test_labels_beyond_class_list(tmp_path):
    torch.save(avdd_dict(classes=3), tmp_path / "a.pt")
    with pytest.raises(DataError, match="only 2 class names"):
        load_avdd(tmp_path / "a.pt", classes=["x", "y"])


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_unreadable_files(tmp_path, content):
    for name in ("x.pt", "x.safetensors"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as err:
            load_dataset(path)
        assert str(path) in str(err.value)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"audio_train": Evil()}, path)
    with pytest.raises(DataError, match="not a readable AVDD"):
        load_avdd(path)


def test_truncated_prepared_file(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "d.safetensors")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 100])
    for mmap in (False, True):
        with pytest.raises(DataError, match=str(path)):
            load_prepared(path, mmap=mmap)


def test_log_mel_matches_definition():
    """Independent numpy computation of torchaudio's MelSpectrogram + AmplitudeToDB definition."""
    import numpy as np

    params = MelParams(sample_rate=8000, clip_samples=4000, n_fft=256, hop_length=128, n_mels=20)
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(3000).astype(np.float64)
    x = np.pad(np.pad(wave, (0, 1000)), 128, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)  # periodic Hann
    frames = np.stack([x[i * 128: i * 128 + 256] * window for i in range(1 + 4000 // 128)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, 129]
    hz_to_mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731  (HTK)
    mel_to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    f_pts = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(4000), 22))
    freqs = np.linspace(0, 4000, 129)
    up = (freqs[None] - f_pts[:-2, None]) / (f_pts[1:-1] - f_pts[:-2])[:, None]
    down = (f_pts[2:, None] - freqs[None]) / (f_pts[2:] - f_pts[1:-1])[:, None]
    fb = np.maximum(0, np.minimum(up, down))  # [20, 129], no normalisation
    expected = 10 * np.log10(np.maximum(fb @ power.T, 1e-10))
    got = log_mel(torch.from_numpy(wave).float(), params).numpy()
    assert got.shape == (20, 32)
    np.testing.assert_allclose(got, expected, atol=1e-3)
