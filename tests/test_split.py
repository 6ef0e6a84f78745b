"""The validation split: carved out of train (by group, else per class), stored and checksummed, embedded."""

from __future__ import annotations

import pytest
import torch

from avdistill.data import load_dataset, load_prepared, save_dataset
from avdistill.data.split import carve_validation, validation_mask
from avdistill.errors import ConfigError, DataError
from conftest import make_dataset


def test_stratified_per_class_without_groups():
    labels = torch.arange(3).repeat_interleave(10)
    mask = validation_mask(labels, 0.2, seed=0)
    assert torch.bincount(labels[mask], minlength=3).tolist() == [2, 2, 2]
    assert torch.equal(mask, validation_mask(labels, 0.2, seed=0))
    assert not torch.equal(mask, validation_mask(labels, 0.2, seed=1))
    assert not validation_mask(labels, 0.0).any()
    with pytest.raises(ConfigError, match="--val-fraction"):
        validation_mask(labels, 1.0)


def test_groups_never_straddle_and_speakers_across_classes_are_drawn_together():
    # 8 speakers, each saying every one of 4 classes 3 times: groups span classes
    speakers = [f"s{k}" for k in range(8) for _ in range(12)]
    labels = torch.arange(4).repeat(3).repeat(8)
    mask = validation_mask(labels, 0.25, seed=2, groups=speakers)
    val_speakers = {s for s, m in zip(speakers, mask.tolist()) if m}
    assert len(val_speakers) == 2 and int(mask.sum()) == 24
    assert all(m == (s in val_speakers) for s, m in zip(speakers, mask.tolist()))
    # single-class groups (videos) are drawn per class: each class keeps its share
    videos = [f"{c}-{v}" for c in range(4) for v in range(5) for _ in range(2)]
    labels = torch.arange(4).repeat_interleave(10)
    mask = validation_mask(labels, 0.2, seed=0, groups=videos)
    assert torch.bincount(labels[mask], minlength=4).tolist() == [2, 2, 2, 2]
    assert all(mask[i] == mask[i + 1] for i in range(0, 40, 2))  # a video's two windows stay together


def test_a_lone_group_stays_in_train():
    train, val, mask = carve_validation(make_dataset().train, 0.5, groups=["one"] * 48)
    assert val is None and not mask.any() and len(train) == 48


def test_val_split_is_stored_checksummed_and_optional(tmp_path):
    dataset = make_dataset()
    dataset.train, dataset.val, _ = carve_validation(dataset.train, 0.25, seed=0)
    path = save_dataset(dataset, tmp_path / "d.safetensors")
    for mmap in (False, True):
        loaded = load_prepared(path, mmap=mmap)
        for key in ("audio", "frames", "labels"):
            assert torch.equal(getattr(loaded.val, key), getattr(dataset.val, key))
        assert torch.equal(loaded.split("val").labels, dataset.val.labels) and len(loaded.train) == 36
    raw = bytearray(path.read_bytes())
    from avdistill.data.storage import read_table

    table, _ = read_table(path)
    start = 8 + int.from_bytes(raw[:8], "little") + table["val.frames"]["data_offsets"][0]
    raw[start] ^= 0xFF
    (tmp_path / "bad.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum mismatch in tensor val.frames"):
        load_prepared(tmp_path / "bad.safetensors")
    old = load_prepared(save_dataset(make_dataset(), tmp_path / "old.safetensors"))  # a file without val
    assert old.val is None
    with pytest.raises(DataError, match="has no val split"):
        old.split("val")
    with pytest.raises(ConfigError, match="unknown split"):
        old.split("dev")


def test_embedded_av_digits_val_split_is_by_speaker():
    data = load_dataset("av-digits")
    assert len(data.train) + len(data.val) == 820 and len(data.test) == 260
    info = data.info
    assert not set(info["train_speakers"]) & set(info["val_speakers"])
    assert len(info["val_speaker_index"]) == len(data.val) and len(info["train_speaker_index"]) == len(data.train)
    assert torch.bincount(data.val.labels).tolist() == [len(data.val) // 10] * 10  # every speaker says every digit
    again = load_dataset("av-digits")
    assert again.checksum == data.checksum and torch.equal(again.val.audio, data.val.audio)


def test_evaluate_cli_on_val_and_its_help(tmp_path, capsys):
    import json

    import avdistill
    from avdistill.cli import main

    dataset = make_dataset()
    dataset.train, dataset.val, _ = carve_validation(dataset.train, 0.25, seed=0)
    data = save_dataset(dataset, tmp_path / "d.safetensors")
    avdistill.distill(load_prepared(data), "random", ipc=2, out=tmp_path / "set", progress=False)
    common = [str(tmp_path / "set" / "synthetic.safetensors"), "--data", str(data), "--runs", "1", "--epochs", "1",
              "--quiet"]
    assert main(["evaluate", *common, "--on", "val", "--steps", "3", "--json", str(tmp_path / "e.json")]) == 0
    (record,) = json.loads((tmp_path / "e.json").read_text())["results"]
    assert record["settings"]["eval"]["on"] == "val" and record["settings"]["eval"]["steps"] == 3
    assert float(record["accuracies"][0] * len(dataset.val)).is_integer()
    old = save_dataset(make_dataset(), tmp_path / "old.safetensors")
    capsys.readouterr()
    assert main(["evaluate", *common[:1], "--data", str(old), "--on", "val", "--quiet"]) == 2
    assert "has no val split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "--on STR" in text and "--steps INT" in text and "fixed-steps protocol" in text
