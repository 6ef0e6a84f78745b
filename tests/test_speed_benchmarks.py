"""The speed benchmarks' reference loop is the same method as avdistill's, and gpu.py runs on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import avdistill
from conftest import make_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import reference  # noqa: E402


def test_with_one_class_the_reference_takes_avdistills_steps():
    """Per-class steps and one step per iteration coincide when there is one class: same draws, same set."""
    data = make_dataset(num_classes=1, train_per_class=12)
    for method, options in (("dm", {"init": "real"}), ("avdd", {"init": "real", "factor": 2})):
        options = {**options, "iterations": 3, "real_per_class": 8, "real_cache": "off", "chunk": 64}
        ours = avdistill.distill(data, method, ipc=2, seed=0, progress=False, **options)
        ref = reference.run(data, method, 2, options, seed=0)
        assert torch.allclose(ours.audio, ref["audio"], atol=1e-4) and torch.allclose(ours.frames, ref["frames"], atol=1e-4)
        assert not torch.equal(ours.audio, avdistill.distill(data, method, ipc=2, seed=0, progress=False,
                                                             **{**options, "iterations": 1}).audio)


def test_reference_counts_the_pairs_it_embeds():
    """min(real_per_class, class size) real pairs per class and iteration; the expanded synthetic rows."""
    data = make_dataset(num_classes=3, train_per_class=5)
    out = reference.run(data, "avdd", 1, {"init": "real", "factor": 2, "iterations": 2, "real_per_class": 128}, seed=0)
    assert out["real_embedded"] == 2 * 3 * 5
    assert out["synthetic_embedded"] == 2 * 3 * 4


def test_gpu_benchmark_runs_on_a_cpu(tmp_path):
    """benchmarks/gpu.py at full VGGS-10K shapes (224x224 frames), 2 iterations, a few classes and pairs."""
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--device", "cpu", "--iterations", "2", "--classes", "2",
                    "--real-per-class", "4", "--ipc", "1", "--precision", "fp32", "--json", str(out)], check=True)
    result = json.loads(out.read_text())["results"]["fp32"]
    assert result["iterations"] == 2 and result["finite"] and result["loop_seconds"] > 0
