"""Hugging Face `datasets` export (`avdistill export --format hf`) and import (`avdistill prepare --hf`).

Real `datasets` folders and Parquet files, real media bytes decoded by PyAV; nothing reaches the network.
"""

from __future__ import annotations

import io
import json
import os
import wave

import av
import numpy as np
import pytest
import torch
import yaml

import avdistill
from avdistill.cli import main
from avdistill.data import load_dataset
from avdistill.data.ingest.prepare import manifest_path_for, work_dir_for
from avdistill.reporting.sound import spectrogram_to_wave, wav_bytes
from avdistill.spread import mean_std
from avdistill.synthetic import SyntheticSet


@pytest.fixture(autouse=True, scope="module")
def offline_hf_home(tmp_path_factory):
    """`datasets` keeps its (lock) files in a folder of the test's own and never looks online."""
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HOME=str(tmp_path_factory.mktemp("hf-home")), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    yield
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _datasets():
    import datasets

    return datasets


def _wav(path_or_bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(path_or_bytes)) as f:
        return f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), "<i2")


# --- export ----------------------------------------------------------------------------------------------------


def test_distill_export_load_gives_back_the_same_pairs_and_a_hub_card(tmp_path, capsys):
    run = tmp_path / "run"
    syn = avdistill.distill(load_dataset("av-digits"), "random", ipc=2, seed=0, out=run, progress=False)
    set_file = str(run / "synthetic.safetensors")
    assert main(["evaluate", set_file, "--runs", "2", "--epochs", "1", "--json", str(run / "eval.json"),
                 "--quiet"]) == 0
    out = tmp_path / "export"
    assert main(["export", set_file, "--format", "hf", "--out", str(out), "--griffin-lim-iters", "4",
                 "--license", "cc-by-sa-3.0", "--quiet"]) == 0
    assert "accuracy from eval.json" in capsys.readouterr().out

    datasets = _datasets()
    pixels = syn.preprocessing.frames_from_model(syn.frames).round().to(torch.uint8)[:, 0].numpy()
    db = syn.preprocessing.audio_from_model(syn.audio)[:, 0].numpy()
    on_disk = datasets.load_from_disk(str(out))
    parquet = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    for ds in (on_disk, parquet):
        assert list(ds.features) == ["image", "audio", "spectrogram", "label"]
        assert ds.features["label"].names == syn.classes
        rows = ds.cast_column("audio", datasets.Audio(decode=False))
        assert rows["label"] == syn.labels.tolist()
        for i, row in enumerate(rows):
            assert row["image"].mode == "L" and np.array_equal(np.asarray(row["image"]), pixels[i])
            np.testing.assert_allclose(np.asarray(row["spectrogram"]), db[i], rtol=0, atol=1e-4)
            rate, samples = _wav(row["audio"]["bytes"])  # the WAV is show's Griffin-Lim sound of this spectrogram
            expected = _wav(wav_bytes(spectrogram_to_wave(torch.from_numpy(db[i]), syn.preprocessing.mel, 4), 11000))
            assert rate == 11000 and np.array_equal(samples, expected[1])

    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "cc-by-sa-3.0" and header["size_categories"] == ["n<1K"]
    assert set(header["task_categories"]) == {"audio-classification", "image-classification"}
    assert header["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    evaluation = json.loads((run / "eval.json").read_text())
    accuracy = mean_std(evaluation["results"][0]["accuracies"])
    for text in ("random", syn.meta["source"]["sha256"], accuracy,
                 "avdistill distill --method random --data av-digits --ipc 2 --seed 0", "CC BY-SA 3.0"):
        assert text in card
    record = json.loads((out / "export.json").read_text())
    assert record["rows"] == 20 and "datasets" in record["versions"]


def _factor_set(path, factor: int = 2) -> SyntheticSet:
    prep = load_dataset("av-digits").preprocessing
    g = torch.Generator().manual_seed(0)
    syn = SyntheticSet(audio=torch.randn(4, *prep.audio_shape, generator=g),
                       frames=torch.randn(4, *prep.frame_shape, generator=g), labels=torch.tensor([0, 0, 1, 1]),
                       classes=["zero", "one"], preprocessing=prep, meta={"method": "dm", "ipc": 2}, factor=factor)
    syn.save(path)
    return syn


def test_factor_sets_export_training_pairs_or_packed_pairs(tmp_path):
    syn = _factor_set(tmp_path / "syn.safetensors")
    datasets = _datasets()
    args = ["export", str(tmp_path / "syn.safetensors"), "--format", "hf", "--griffin-lim-iters", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "pairs")]) == 0
    assert main(args + ["--out", str(tmp_path / "packed"), "--packed"]) == 0
    audio, frames, labels = syn.training_pairs()
    pairs = datasets.load_from_disk(str(tmp_path / "pairs")).cast_column("audio", datasets.Audio(decode=False))
    assert len(pairs) == 16 and pairs["label"] == labels.tolist()
    expected = syn.preprocessing.frames_from_model(frames).round().to(torch.uint8)[:, 0].numpy()
    assert all(np.array_equal(np.asarray(img), expected[i]) for i, img in enumerate(pairs["image"]))
    packed = datasets.load_from_disk(str(tmp_path / "packed"))
    assert len(packed) == 4 and "audio" not in packed.features and packed["label"] == [0, 0, 1, 1]
    np.testing.assert_allclose(np.asarray(packed["spectrogram"]),
                               syn.preprocessing.audio_from_model(syn.audio)[:, 0].numpy(), atol=1e-4)
    assert "2x2 grid" in (tmp_path / "packed" / "README.md").read_text()


def test_export_is_all_or_nothing_and_refuses_a_foreign_folder(tmp_path, monkeypatch, capsys):
    _factor_set(tmp_path / "syn.safetensors", factor=1)
    out = tmp_path / "out"
    args = ["export", str(tmp_path / "syn.safetensors"), "--format", "hf", "--out", str(out), "--quiet",
            "--griffin-lim-iters", "2"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(args[:5] + [str(tmp_path / "mine")] + args[6:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no avdistill export" in err and "mine" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

    assert main(args) == 0
    before = sorted(p.name for p in out.iterdir())
    datasets = _datasets()

    def broken(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        main(args)  # a re-export that fails half-way leaves the earlier export whole
    assert sorted(p.name for p in out.iterdir()) == before and len(datasets.load_from_disk(str(out))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out", "syn.json", "syn.safetensors"]


# --- import ----------------------------------------------------------------------------------------------------


def _encode_audio(wave_2d: np.ndarray, rate: int, container_format: str = "wav") -> bytes:
    """A float32 WAV (or other container) of channels x samples, written by PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as c:
        stream = c.add_stream("pcm_f32le", rate=rate)
        stream.layout = "stereo" if wave_2d.shape[0] == 2 else "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave_2d, np.float32), format="fltp",
                                           layout=stream.layout.name)
        frame.sample_rate, frame.pts = rate, 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode())
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_lossless_clip(path, wave_2d: np.ndarray, rate: int, pixels: np.ndarray, fps: int = 25) -> None:
    """The same sound and picture as a Matroska clip: FFV1 grey video, float PCM audio (both lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="matroska") as c:
        video = c.add_stream("ffv1", rate=fps)
        video.width, video.height, video.pix_fmt = pixels.shape[1], pixels.shape[0], "gray"
        audio = c.add_stream("pcm_f32le", rate=rate)
        audio.layout = "stereo"
        for _ in range(fps):
            c.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="gray")))
        c.mux(video.encode())
        for start in range(0, wave_2d.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave_2d[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            c.mux(audio.encode(frame))
        c.mux(audio.encode())


def _av_digits_media(per_class: int = 2, classes=(0, 1, 2), rate: int = 16000):
    """AV-Digits pairs as media: each spectrogram inverted to sound, resampled to `rate`, made stereo (unequal
    channels), with its 32x32 grey frame. {split: [(class name, stereo wave, pixels)]}."""
    import librosa

    data = load_dataset("av-digits")
    media = {}
    for split in ("train", "test"):
        part = getattr(data, split)
        rows = []
        for c in classes:
            for i in torch.nonzero(part.labels == c).flatten()[:per_class].tolist():
                mono = spectrogram_to_wave(part.audio[i, 0].float(), data.preprocessing.mel, 8)
                mono = librosa.resample(mono, orig_sr=11000, target_sr=rate).astype(np.float32)
                rows.append((data.classes[c], np.stack([mono * 0.9, mono * 0.5]), part.frames[i, 0].numpy()))
        media[split] = rows
    return media


def _hf_dataset(rows, names, rate: int, extra: dict | None = None):
    datasets = _datasets()
    from avdistill.reporting.export import make_dataset

    columns = {"audio": [{"bytes": _encode_audio(w, rate), "path": None} for _, w, _ in rows],
               "image": [{"bytes": _png(p), "path": None} for _, _, p in rows],
               "label": [names.index(c) for c, _, _ in rows], **(extra or {})}
    features = {"audio": datasets.Audio(), "image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                **{k: datasets.Value("string") for k in (extra or {})}}
    return make_dataset(columns, features)


def test_prepare_hf_gives_the_tensors_prepare_gives_for_the_same_clips(tmp_path):
    """AV-Digits as a `datasets` DatasetDict and as lossless clips: prepare --hf == prepare --folder."""
    datasets = _datasets()
    media = _av_digits_media()
    names = sorted({c for c, _, _ in media["train"]})  # the folder source's class order
    for split, rows in media.items():
        for k, (c, w, p) in enumerate(rows):
            _write_lossless_clip(tmp_path / "clips" / split / c / f"{k:03d}.mkv", w, 16000, p)
    rows = {s: sorted(r, key=lambda row: names.index(row[0])) for s, r in media.items()}  # folder listing order
    datasets.DatasetDict({s: _hf_dataset(r, names, 16000) for s, r in rows.items()}).save_to_disk(str(tmp_path / "hf"))
    common = ["--frame-size", "32", "--grayscale", "--n-mels", "40", "--normalization", "train", "--val-fraction", "0",
              "--quiet"]  # --hf carves no validation split yet
    assert main(["prepare", "--folder", str(tmp_path / "clips"), "--out", str(tmp_path / "clips.safetensors"),
                 "--workers", "1", *common]) == 0
    assert main(["prepare", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "hf.safetensors"), *common]) == 0
    clips, hf = load_dataset(tmp_path / "clips.safetensors"), load_dataset(tmp_path / "hf.safetensors")
    assert hf.classes == clips.classes == names and hf.preprocessing.mel == clips.preprocessing.mel
    a, b = clips.preprocessing, hf.preprocessing  # train statistics: in one piece vs streamed chunk by chunk
    np.testing.assert_allclose([*a.frame_mean, *a.frame_std, a.audio_mean, a.audio_std],
                               [*b.frame_mean, *b.frame_std, b.audio_mean, b.audio_std], rtol=1e-4)
    for split in ("train", "test"):
        a, b = getattr(clips, split), getattr(hf, split)
        assert len(a) == len(rows[split]) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.frames, b.frames)  # lossless video: the same pixels
        assert (a.audio - b.audio).abs().max() < 1e-2  # dB; only the resampler's chunking differs
    source = load_dataset("av-digits")  # and the sound is the AV-Digits spectrogram it was made from
    first = int(torch.nonzero(source.train.labels == source.classes.index(names[0]))[0])
    corr = np.corrcoef(hf.train.audio[0].flatten(), source.train.audio[first].float().flatten())[0, 1]
    assert corr > 0.9


def _small_rows(n_per_class: int = 3, rate: int = 8000):
    t = np.arange(rate) / rate
    rows = []
    for c, hz in (("low", 300.0), ("high", 2000.0)):
        for k in range(n_per_class):
            wave_1d = (0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * np.random.default_rng(k).standard_normal(rate))
            rows.append((c, wave_1d[None].astype(np.float32), np.full((20, 24, 3), 40 * k + (0 if c == "low" else 120),
                                                                      np.uint8)))
    return rows


def test_bad_rows_are_skipped_and_named_in_the_manifest(tmp_path):
    import pyarrow as pa

    datasets = _datasets()
    rows = _small_rows(4)
    dataset = _hf_dataset(rows, ["low", "high"], 8000, extra={"part": ["train", "train", "test", "test"] * 2})
    table = dataset.data.table.to_pylist()
    table[1]["audio"] = {"bytes": b"not audio at all", "path": None}
    table[2]["image"] = None
    table[5]["audio"] = {"bytes": _encode_audio(rows[5][1][:, :2000], 8000), "path": None}  # 0.25 s
    table[7]["part"] = "holdout"
    damaged = datasets.Dataset(pa.Table.from_pylist(table, schema=dataset.data.table.schema), info=dataset.info)
    damaged.to_parquet(str(tmp_path / "rows.parquet"))
    out = tmp_path / "rows.safetensors"
    assert main(["prepare", "--hf", str(tmp_path / "rows.parquet"), "--split-column", "part", "--out", str(out),
                 "--frame-size", "16", "--quiet"]) == 0
    prepared = load_dataset(out)
    assert prepared.train.labels.tolist() == [0, 1] and prepared.test.labels.tolist() == [0, 1]
    assert prepared.train.frames.shape[1:] == (3, 16, 16) and prepared.classes == ["low", "high"]
    skipped = {s["file"]: s["reason"] for s in json.loads(manifest_path_for(out).read_text())["skipped"]}
    assert set(skipped) == {f"rows.parquet row {i}" for i in (1, 2, 5, 7)}
    assert "undecodable audio" in skipped["rows.parquet row 1"] and skipped["rows.parquet row 2"] == "missing image"
    assert "audio covers only 0.25 s" in skipped["rows.parquet row 5"]
    assert "unknown split 'holdout'" in skipped["rows.parquet row 7"]


@pytest.mark.parametrize("options, message", [
    (["--audio-column", "sound"], "--audio-column 'sound': no such column (columns: audio, image, label)"),
    (["--audio-column", "label"], "--audio-column 'label': the column holds ClassLabel"),
    (["--image-column", "audio"], "--image-column 'audio': the column holds Audio"),
])
def test_bad_columns_are_one_line_naming_column_and_file(tmp_path, capsys, options, message):
    _hf_dataset(_small_rows(1), ["low", "high"], 8000).save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "out.safetensors"
    capsys.readouterr()
    assert main(["prepare", "--hf", str(tmp_path / "hf"), "--out", str(out), *options, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "hf") in err and message in err
    assert not out.exists() and not manifest_path_for(out).exists() and not work_dir_for(out).exists()


def test_empty_or_unsplittable_sources_stop_with_one_line(tmp_path, capsys):
    _hf_dataset(_small_rows(1), ["low", "high"], 8000).select([]).to_parquet(str(tmp_path / "empty.parquet"))
    capsys.readouterr()
    assert main(["prepare", "--hf", str(tmp_path / "empty.parquet"), "--out", str(tmp_path / "e.safetensors"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty.parquet: the dataset has no rows" in err
    only_train = _hf_dataset(_small_rows(2), ["low", "high"], 8000, extra={"part": ["train"] * 4})
    only_train.save_to_disk(str(tmp_path / "train-only"))
    out = tmp_path / "t.safetensors"
    assert main(["prepare", "--hf", str(tmp_path / "train-only"), "--split-column", "part", "--out", str(out),
                 "--frame-size", "8", "--quiet"]) == 2
    assert "the test split is empty" in capsys.readouterr().err
    assert not out.exists() and work_dir_for(out).is_dir()  # the decoded rows stay for the rerun


def test_chunks_resume_after_an_interruption_and_do_not_change_the_result(tmp_path, monkeypatch):
    from avdistill.data.ingest import hf

    _hf_dataset(_small_rows(4), ["low", "high"], 8000).to_parquet(str(tmp_path / "rows.parquet"))
    common = ["prepare", "--hf", str(tmp_path / "rows.parquet"), "--frame-size", "8", "--test-fraction", "0.25",
              "--quiet"]  # the interrupted run decodes in the test's process (--workers 1), the other in two workers
    assert main(common + ["--out", str(tmp_path / "whole.safetensors"), "--workers", "2", "--chunk-size", "2"]) == 0
    decode, calls, interrupt = hf._decode_chunk, [], [True]

    def interrupted(batch, *args):
        calls.append(len(batch["audio"]))
        if interrupt[0] and len(calls) == 2:
            raise KeyboardInterrupt
        return decode(batch, *args)

    monkeypatch.setattr(hf, "_decode_chunk", interrupted)
    out = tmp_path / "chunked.safetensors"
    assert main(common + ["--out", str(out), "--chunk-size", "3", "--workers", "1"]) == 130
    assert len(list(work_dir_for(out).glob("*.safetensors"))) == 1 and not out.exists()
    calls.clear()
    interrupt[0] = False
    assert main(common + ["--out", str(out), "--chunk-size", "3", "--workers", "1"]) == 0
    assert calls == [3, 2]  # the first chunk was kept; the second (3 rows) and third (2 rows) are decoded now
    whole, chunked = load_dataset(tmp_path / "whole.safetensors"), load_dataset(out)
    for split in ("train", "test"):
        for key in ("audio", "frames", "labels"):
            assert torch.equal(getattr(getattr(whole, split), key), getattr(getattr(chunked, split), key))


def test_a_folder_of_parquet_files_named_by_split_keeps_its_splits(tmp_path):
    rows = _small_rows(3)
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split, picked in (("train", [0, 1, 3, 4]), ("test", [2, 5])):
        _hf_dataset([rows[i] for i in picked], ["low", "high"], 8000).to_parquet(
            str(tmp_path / "repo" / "data" / f"{split}-00000-of-00001.parquet"))
    out = tmp_path / "repo.safetensors"
    assert main(["prepare", "--hf", str(tmp_path / "repo"), "--out", str(out), "--frame-size", "8", "--quiet"]) == 0
    prepared = load_dataset(out)
    assert prepared.train.labels.tolist() == [0, 0, 1, 1] and prepared.test.labels.tolist() == [0, 1]
    assert json.loads(manifest_path_for(out).read_text())["source"]["splits"] == ["train", "test"]
    (tmp_path / "repo" / "data" / "test-00000-of-00001.parquet").rename(
        tmp_path / "repo" / "data" / "validation-00000-of-00001.parquet")  # no test split: drawn from train
    assert main(["prepare", "--hf", str(tmp_path / "repo"), "--out", str(out), "--frame-size", "8",
                 "--test-fraction", "0.5", "--quiet"]) == 0
    prepared = load_dataset(out)
    assert sorted(prepared.train.labels.tolist() + prepared.test.labels.tolist()) == [0, 0, 1, 1]
    assert len(prepared.test) == 2


def test_frames_as_uint8_arrays_prepare_like_images(tmp_path):
    datasets = _datasets()
    from avdistill.reporting.export import make_dataset

    rows = _small_rows(2)
    image_version = _hf_dataset(rows, ["low", "high"], 8000)
    array_version = make_dataset({"audio": image_version.data.table.column("audio").to_pylist(),
                                  "frame": np.stack([p for _, _, p in rows]), "label": [0, 0, 1, 1]},
                                 {"audio": datasets.Audio(),
                                  "frame": datasets.Array3D(shape=(20, 24, 3), dtype="uint8"),
                                  "label": datasets.ClassLabel(names=["low", "high"])})
    image_version.save_to_disk(str(tmp_path / "images"))
    array_version.save_to_disk(str(tmp_path / "arrays"))
    common = ["--frame-size", "10x12", "--test-fraction", "0.5", "--quiet"]
    assert main(["prepare", "--hf", str(tmp_path / "images"), "--out", str(tmp_path / "i.safetensors"), *common]) == 0
    assert main(["prepare", "--hf", str(tmp_path / "arrays"), "--image-column", "frame",
                 "--out", str(tmp_path / "a.safetensors"), *common]) == 0
    images, arrays = load_dataset(tmp_path / "i.safetensors"), load_dataset(tmp_path / "a.safetensors")
    assert images.train.frames.shape[1:] == (3, 10, 12) and torch.equal(images.train.frames, arrays.train.frames)
    assert torch.equal(images.test.audio, arrays.test.audio)
