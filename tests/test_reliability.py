"""Faults from the outside world: random bytes as input, and kill -9 in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avdistill.data import load_dataset, save_dataset
from avdistill.errors import AVDistillError
from avdistill.synthetic import load_synthetic
from conftest import make_dataset

# derandomize: CI sees the same examples every run; raise max_examples locally to hunt for new faults.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_random_bytes_give_a_clear_error(tmp_path_factory, blob):
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("x.safetensors", "x.pt"):
        path = folder / name
        path.write_bytes(blob)
        with pytest.raises(AVDistillError) as err:
            load_dataset(path)
        assert str(path) in str(err.value)
    with pytest.raises(AVDistillError):
        load_synthetic(folder / "x.safetensors")


@pytest.fixture(scope="module")
def prepared_bytes(tmp_path_factory) -> bytes:
    path = save_dataset(make_dataset(num_classes=2, train_per_class=3, test_per_class=2),
                        tmp_path_factory.mktemp("d") / "d.safetensors")
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_prepared_files_give_a_clear_error(tmp_path_factory, prepared_bytes, data):
    """Truncate the file, or overwrite a few of its bytes: load or fail with a DataError, nothing else."""
    blob = bytearray(prepared_bytes)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="edits")):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("dmg") / "d.safetensors"
    path.write_bytes(bytes(blob))
    for mmap in (False, True):
        try:
            dataset = load_dataset(path, mmap=mmap)
        except AVDistillError as exc:
            assert str(path) in str(exc)
        else:  # a byte flip inside pixel data is still a valid dataset
            assert len(dataset.train) == 6


def _run_until(args: list[str], marker: Path, timeout: float = 120) -> None:
    """Start the CLI in a real process, kill -9 it as soon as `marker` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "avdistill", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_during_distill_then_rerun_equals_uninterrupted(tiny_dataset_file, tmp_path):
    common = ["distill", "--data", tiny_dataset_file.source_path, "--method", "dm", "--ipc", "2", "--seed", "3",
              "--iterations", "40", "--checkpoint-every", "5", "--real-per-class", "6", "--quiet"]
    killed = tmp_path / "killed"
    _run_until(common + ["--out", str(killed)], killed / "checkpoint.safetensors")
    assert not (killed / "synthetic.safetensors").exists()
    subprocess.run([sys.executable, "-m", "avdistill", *common, "--out", str(killed)], check=True,
                   capture_output=True)
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "avdistill", *common, "--out", str(straight)], check=True,
                   capture_output=True)
    a, b = load_synthetic(killed / "synthetic.safetensors"), load_synthetic(straight / "synthetic.safetensors")
    assert torch.equal(a.audio, b.audio) and torch.equal(a.frames, b.frames)
    assert not list(killed.glob(".*.tmp"))  # no temp files left behind by the killed writer


def test_kill_9_during_bench_then_rerun_completes(tiny_dataset_file, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--data", tiny_dataset_file.source_path, "--methods", "random,dm", "--ipc", "1,2",
            "--runs", "1", "--epochs", "1", "--set", "dm.iterations=4", "--set", "dm.real_per_class=4",
            "--out", str(out), "--quiet"]
    _run_until(args, out / "cells" / "random-ipc2-set0-ensemble.json")
    assert not (out / "report.md").exists()
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    subprocess.run([sys.executable, "-m", "avdistill", *args], check=True, capture_output=True)
    assert (out / "report.md").exists()
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert len(after) == 5 and all(after[name] == t for name, t in done_before.items())  # finished cells kept
