"""DM: the loss on known tensors, the method end to end, resume, determinism."""

from __future__ import annotations

import json

import pytest
import torch

import avdistill
import interrupt
from avdistill.errors import ConfigError
from avdistill.methods.base import RunContext, get_method, make_config
from avdistill.methods.dm import dm_loss
from avdistill.methods.matching import MeanMatcher, class_means, mean_matching_loss
from avdistill.synthetic import load_synthetic


def test_class_means_and_dm_loss_on_known_tensors():
    emb = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [10.0, 10.0]])
    labels = torch.tensor([0, 0, 1, 2])
    means = class_means(emb, labels, 3)
    assert torch.equal(means, torch.tensor([[2.0, 1.0], [0.0, 4.0], [10.0, 10.0]]))
    syn = torch.tensor([[2.0, 0.0], [1.0, 4.0], [10.0, 7.0]])
    # (0² + 1²) + (1² + 0²) + (0² + 3²) = 11
    assert mean_matching_loss(means, syn).item() == 11.0


def test_dm_loss_gradient_pulls_synthetic_mean_to_real_mean():
    real = torch.tensor([[2.0, 1.0]])
    syn = torch.zeros(1, 2, requires_grad=True)
    mean_matching_loss(real, syn).backward()
    assert torch.equal(syn.grad, torch.tensor([[-4.0, -2.0]]))  # d/ds ||r - s||² = -2 (r - s)


def test_dm_end_to_end_writes_outputs_and_lowers_loss(tiny_dataset_file, tmp_path):
    syn = avdistill.distill(tiny_dataset_file, "dm", ipc=2, seed=1, out=tmp_path, iterations=12,
                            real_per_class=8, lr_audio=0.1, lr_frames=0.1, progress=False)
    assert syn.audio.shape == (8, 1, 16, 21) and syn.frames.shape == (8, 1, 16, 16)
    assert syn.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    log = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(12))
    assert all(abs(r["total"] - r["dm_audio"] - r["dm_visual"]) < 1e-3 * r["total"] for r in log)
    loaded = load_synthetic(tmp_path / "synthetic.safetensors")
    assert torch.equal(loaded.audio, syn.audio) and torch.equal(loaded.frames, syn.frames)
    meta = json.loads((tmp_path / "synthetic.json").read_text())["meta"]
    assert meta["method"] == "dm" and meta["seed"] == 1 and meta["config"]["iterations"] == 12
    assert meta["source"]["sha256"] == tiny_dataset_file.checksum and "torch" in meta["versions"]
    assert not (tmp_path / "checkpoint.safetensors").exists()
    # The loss went down: the DM objective over the draws the run trained on (same encoders, real
    # batches and augmentations), for the real init it started from and for the result.
    init = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=1, progress=False)  # DM's init (seed 1)
    assert torch.equal(init.labels, syn.labels) and not torch.allclose(init.frames, syn.frames)
    cfg = make_config(get_method("dm"), {"iterations": 12, "real_per_class": 8})
    matcher = MeanMatcher(tiny_dataset_file, cfg, syn.labels, RunContext(seed=1, progress=False))
    objective = lambda s: sum(dm_loss(matcher(i, s.audio, s.frames))["total"].item() for i in range(12))  # noqa: E731
    assert objective(syn) < 0.8 * objective(init)


def test_same_seed_bit_identical_different_seed_differs(tiny_dataset_file):
    run = lambda seed: avdistill.distill(tiny_dataset_file, "dm", ipc=1, seed=seed, iterations=4,  # noqa: E731
                                         real_per_class=6, progress=False)
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.frames, b.frames)
    assert not torch.equal(a.frames, c.frames)


def interrupt_after_checkpoints(monkeypatch, n: int) -> None:
    """Make the next run die (KeyboardInterrupt) right after writing its n-th checkpoint."""
    interrupt.interrupt_after_checkpoints(n, monkeypatch.setattr)


def test_interrupted_run_resumes_to_the_same_result(tiny_dataset_file, tmp_path, monkeypatch):
    options = dict(ipc=2, seed=5, iterations=10, real_per_class=6, checkpoint_every=3, progress=False)
    straight = avdistill.distill(tiny_dataset_file, "dm", out=tmp_path / "straight", **options)
    interrupt_after_checkpoints(monkeypatch, 2)  # dies at iteration 6
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "dm", out=tmp_path / "resumed", **options)
    assert (tmp_path / "resumed" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "resumed" / "synthetic.safetensors").exists()
    resumed = avdistill.distill(tiny_dataset_file, "dm", out=tmp_path / "resumed", **options)
    assert torch.equal(resumed.audio, straight.audio) and torch.equal(resumed.frames, straight.frames)
    log = [json.loads(x)["iteration"] for x in (tmp_path / "resumed" / "losses.jsonl").read_text().splitlines()]
    assert log == list(range(10))


def test_resume_refuses_a_checkpoint_of_other_settings(tiny_dataset_file, tmp_path, monkeypatch):
    options = dict(ipc=1, iterations=4, checkpoint_every=2, out=tmp_path, progress=False)
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "dm", real_per_class=4, **options)
    with pytest.raises(ConfigError, match="other settings"):
        avdistill.distill(tiny_dataset_file, "dm", real_per_class=5, **options)


@pytest.mark.parametrize("options, words", [
    ({"ipc": 0}, "ipc must be >= 1"),
    ({"ipc": 13}, "fewer than ipc=13"),
    ({"init": "zeros"}, "init must be one of"),
    ({"encoder": "huge"}, "--encoder must be one of"),
    ({"bogus": 1}, "bogus"),
    ({"iterations": -1}, "--iterations must be >= 1"),
    ({"augment": "crop_blur"}, "blur"),
])
def test_impossible_options_are_clear_errors(tiny_dataset_file, options, words):
    options = {"ipc": 1, "iterations": 1, **options}
    with pytest.raises(ConfigError, match=words):
        avdistill.distill(tiny_dataset_file, "dm", progress=False, **options)
