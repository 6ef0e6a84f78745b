"""Large datasets: the streamed writer, chunked scans, and memory-mapped runs that never copy the data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import avdistill
from avdistill.cli.common import load_data
from avdistill.data import load_prepared, save_dataset
from avdistill.data.storage import TensorStream, save_dataset_streamed
from avdistill.data.validate import check_split, first_nonfinite
from avdistill.errors import DataError
from avdistill.evaluation import EvalConfig
from avdistill.evaluation.retrieval import blocked_ranks, retrieval_metrics
from conftest import make_dataset

NAMES = [f"{s}.{k}" for s in ("train", "test") for k in ("audio", "frames", "labels")]


def streams(dataset, rows: int) -> dict[str, TensorStream]:
    """`dataset`'s tensors as streams of `rows`-row chunks (the last one shorter)."""
    out = {}
    for name in NAMES:
        split, key = name.split(".")
        t = getattr(getattr(dataset, split), key)
        out[name] = TensorStream(t.dtype, tuple(t.shape), iter(t.split(rows)))
    return out


@pytest.mark.parametrize("audio_dtype", [torch.float32, torch.float16])
def test_streamed_file_is_byte_identical_to_save_dataset(tmp_path, audio_dtype):
    dataset = make_dataset()
    for split in (dataset.train, dataset.test):
        split.audio = split.audio.to(audio_dtype)
    reference = save_dataset(dataset, tmp_path / "ref.safetensors")
    streamed = save_dataset_streamed(tmp_path / "s.safetensors", dataset.name, dataset.classes, dataset.preprocessing,
                                     dataset.info, streams(dataset, rows=3))
    assert streamed.read_bytes() == reference.read_bytes()
    with safe_open(str(streamed), framework="pt") as f:
        assert sorted(f.keys()) == sorted(NAMES)
        assert torch.equal(f.get_tensor("train.audio"), dataset.train.audio)
    loaded = load_prepared(streamed, verify=True)
    assert torch.equal(loaded.test.frames, dataset.test.frames)


def test_streamed_writer_refuses_chunks_that_do_not_fit_and_leaves_no_file(tmp_path):
    dataset = make_dataset()
    bad = streams(dataset, rows=3)
    t = dataset.train.audio
    bad["train.audio"] = TensorStream(t.dtype, (len(t) + 1, *t.shape[1:]), iter(t.split(3)))
    with pytest.raises(DataError, match="train.audio: the chunks hold"):
        save_dataset_streamed(tmp_path / "d.safetensors", dataset.name, dataset.classes, dataset.preprocessing,
                              dataset.info, bad)
    assert list(tmp_path.iterdir()) == []


def test_chunked_nan_scan_reports_the_first_bad_sample_as_the_whole_scan_did():
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(23, 1, 4, 5, generator=g).half()
    assert first_nonfinite(audio, chunk=4) is None
    audio[17, 0, 1, 2], audio[9, 0, 3, 4] = float("inf"), float("nan")  # 9: in the third chunk, not the first
    whole = int(torch.nonzero((~torch.isfinite(audio)).flatten(1).any(1)).flatten()[0])  # the former full scan
    assert [first_nonfinite(audio, chunk=c) for c in (1, 4, 9, 10, 100)] == [whole] * 5 == [9] * 5
    dataset = make_dataset()
    dataset.train.audio[5, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match=r"train audio holds NaN or Inf values \(first at sample 5\)"):
        check_split(dataset.train, "d.safetensors", "train")


def test_a_mapped_file_is_scanned_with_reads_and_gives_the_same_error(tmp_path):
    dataset = make_dataset()
    dataset.test.audio[3, 0, 2, 1] = float("-inf")
    path = save_dataset(dataset, tmp_path / "d.safetensors")
    for mmap in (False, True):
        with pytest.raises(DataError, match=r"test audio holds NaN or Inf values \(first at sample 3\)"):
            load_prepared(path, mmap=mmap)
        assert len(load_prepared(path, mmap=mmap, verify=False).test) == len(dataset.test)


def test_blocked_retrieval_ranks_match_the_whole_matrix():
    g = torch.Generator().manual_seed(1)
    z_a, z_v = torch.randn(37, 8, generator=g), torch.randn(37, 8, generator=g)
    labels = torch.randint(0, 4, (37,), generator=g)
    for match, relevant in (("class", labels[:, None] == labels[None, :]), ("pair", torch.eye(37, dtype=torch.bool))):
        whole = retrieval_metrics(z_a @ z_v.T, relevant)
        blocked = blocked_ranks(z_a, z_v, labels, match, block=5)
        assert whole["R@1"] == float((blocked <= 1).float().mean())
        assert whole["median_rank"] == float(blocked.float().quantile(0.5))


def file_backed(t: torch.Tensor, path: Path) -> bool:
    """Whether `t`'s memory lies in a mapping of `path` (Linux: /proc/self/maps)."""
    addr, target = t.data_ptr(), str(Path(path).resolve())
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= addr < high:
                return True
    return False


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc/self/maps")
def test_commands_map_the_dataset_and_a_run_never_copies_it(tmp_path):
    """A few-thousand-clip streamed file: the CLI's loader maps it; distilling and evaluating leave it mapped."""
    n, classes = 3000, 4
    labels = torch.arange(n) % classes
    noise = torch.randn(n, 1, 16, 21, generator=torch.Generator().manual_seed(0))
    audio = torch.linspace(-60, -10, classes)[labels].view(n, 1, 1, 1) + noise
    frames = (labels * 60).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 16, 16)
    data = {f"{split}.{key}": t[:rows].contiguous() for split, rows in (("train", n), ("test", 400))
            for key, t in (("audio", audio.half()), ("frames", frames), ("labels", labels))}
    tensors = {name: TensorStream(t.dtype, tuple(t.shape), iter(t.split(512))) for name, t in data.items()}
    base = make_dataset()
    path = save_dataset_streamed(tmp_path / "big.safetensors", "big", [f"c{i}" for i in range(classes)],
                                 base.preprocessing, {}, tensors)
    dataset = load_data(str(path))
    split_tensors = [getattr(getattr(dataset, s), k) for s in ("train", "test") for k in ("audio", "frames", "labels")]
    assert all(file_backed(t, path) for t in split_tensors)
    pointers = [t.data_ptr() for t in split_tensors]
    syn = avdistill.distill(dataset, "dm", ipc=2, seed=0, progress=False, iterations=2, real_per_class=16)
    avdistill.evaluate(syn, dataset, runs=1, progress=False, config=EvalConfig(epochs=1, test_batch=128))
    after = [getattr(getattr(dataset, s), k) for s in ("train", "test") for k in ("audio", "frames", "labels")]
    assert [t.data_ptr() for t in after] == pointers and all(file_backed(t, path) for t in after)
    dataset.train.audio[0] += 1  # copy-on-write: the run's copy changes, the file does not
    assert torch.equal(load_prepared(path, verify=True).train.audio[0], data["train.audio"][0])
