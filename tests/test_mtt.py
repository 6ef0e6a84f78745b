"""MTT: the matching loss, gradients through the unrolled student, the expert cache, resume, option errors."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from safetensors import safe_open

import avdistill
import avdistill.methods.trajectories as trajectories
from avdistill.augment import DEFAULT_STRATEGY
from avdistill.errors import ConfigError
from avdistill.methods.initial_set import initial_synthetic
from avdistill.methods.mtt import MTTConfig, TrajectoryMatcher
from avdistill.methods.trajectories import ExpertTraining, ParameterLayout, build_network, expert_trajectories
from test_dm import interrupt_after_checkpoints

TINY = dict(num_experts=2, expert_train_epochs=3, expert_epochs=1, max_start_epoch=2, syn_steps=3, batch_syn=3)


def matcher_with(dataset, trajectory_of, cfg: MTTConfig, ipc: int = 2):
    """A matcher over one 'expert' trajectory built by `trajectory_of(matcher, start, audio, frames, syn_lr)`."""
    network = build_network(dataset, cfg.encoder, cfg.head, 0)
    audio, frames, labels = initial_synthetic(dataset, ipc, "real", 0)
    audio.requires_grad_(True), frames.requires_grad_(True)
    syn_lr = torch.tensor(cfg.syn_lr_init, requires_grad=True)
    matcher = TrajectoryMatcher(network, [], labels, cfg, seed=0)
    start = ParameterLayout(network).flatten(network)
    matcher.experts = [trajectory_of(matcher, start, audio, frames, syn_lr)]
    return matcher, audio, frames, syn_lr


def test_loss_is_zero_when_the_student_reproduces_the_expert(tiny_dataset):
    cfg = MTTConfig(syn_steps=4, batch_syn=3, expert_epochs=1, max_start_epoch=1, syn_lr_init=0.05)

    def same_steps(matcher, start, audio, frames, syn_lr):  # the expert takes exactly the student's N steps
        return torch.stack([start, matcher.student(start, audio, frames, syn_lr, iteration=7).detach()])

    matcher, audio, frames, syn_lr = matcher_with(tiny_dataset, same_steps, cfg)
    expert = matcher.experts[0]
    assert (expert[1] - expert[0]).norm() > 1e-3  # the steps really moved the parameters
    terms = matcher(7, audio, frames, syn_lr)
    assert terms["total"].item() == pytest.approx(0.0, abs=1e-10)
    assert matcher(8, audio, frames, syn_lr)["total"].item() > 1e-6  # other minibatches and augmentations


def test_gradients_reach_synthetic_audio_frames_and_step_size(tiny_dataset):
    cfg = MTTConfig(syn_steps=3, batch_syn=4, expert_epochs=1, max_start_epoch=1)

    def moved(matcher, start, audio, frames, syn_lr):
        g = torch.Generator().manual_seed(0)
        return torch.stack([start, start + 0.01 * torch.randn(start.shape, generator=g)])

    matcher, audio, frames, syn_lr = matcher_with(tiny_dataset, moved, cfg)
    matcher(0, audio, frames, syn_lr)["total"].backward()
    for grad in (audio.grad, frames.grad, syn_lr.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_experts_are_cached_reused_and_load_without_pickle(tiny_dataset_file, tmp_path, monkeypatch):
    cfg = ExpertTraining(expert_train_epochs=2, expert_batch=8)

    def experts(cfg, count, folder):
        return expert_trajectories(tiny_dataset_file, cfg, "small", "ensemble", DEFAULT_STRATEGY, count, folder)

    trained = {"n": 0}
    real_train = trajectories.train_expert

    def counting(*args, **kwargs):
        trained["n"] += 1
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trajectories, "train_expert", counting)
    first = experts(cfg, 2, tmp_path)
    files = sorted(tmp_path.glob("*/expert_*.safetensors"))
    assert trained["n"] == 2 and len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    second = experts(cfg, 2, tmp_path)
    assert trained["n"] == 2 and [f.stat().st_mtime_ns for f in files] == mtimes
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert first[0].shape == (3, ParameterLayout(build_network(tiny_dataset_file, "small", "ensemble", 0)).size)
    assert not torch.equal(first[0][0], first[1][0])  # experts start from different weights
    with safe_open(str(files[0]), framework="pt") as f:
        meta = f.metadata()
    identity = json.loads(meta["identity"])
    assert identity["dataset"] == tiny_dataset_file.checksum and identity["training"]["expert_train_epochs"] == 2
    assert "torch" in json.loads(meta["info"])["versions"]
    # Other settings get their own cache entry; a file whose header disagrees with the settings is never used:
    # it is trained again and replaced.
    experts(ExpertTraining(expert_train_epochs=1, expert_batch=8), 1, tmp_path)
    assert trained["n"] == 3
    other_settings = ExpertTraining(expert_train_epochs=3, expert_batch=8)
    experts(other_settings, 1, tmp_path)
    assert trained["n"] == 4
    (other,) = [f for f in tmp_path.glob("*/expert_000.safetensors") if f.parent != files[0].parent
                and json.loads(safe_open(str(f), framework="pt").metadata()["identity"])["training"][
                    "expert_train_epochs"] == 3]
    other.write_bytes(files[0].read_bytes())
    third = experts(other_settings, 1, tmp_path)
    assert trained["n"] == 5 and third[0].shape[0] == 4 and other.read_bytes() != files[0].read_bytes()


def test_mtt_end_to_end_resumes_to_the_same_result(tiny_dataset_file, tmp_path, monkeypatch):
    options = dict(ipc=1, seed=2, iterations=6, checkpoint_every=2, progress=False, expert_dir=str(tmp_path / "experts"),
                   lr_audio=1000.0, lr_frames=1000.0, **TINY)
    straight = avdistill.distill(tiny_dataset_file, "mtt", out=tmp_path / "straight", **options)
    interrupt_after_checkpoints(monkeypatch, 2)  # dies after iteration 4
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "mtt", out=tmp_path / "resumed", **options)
    resumed = avdistill.distill(tiny_dataset_file, "mtt", out=tmp_path / "resumed", **options)
    assert torch.equal(resumed.audio, straight.audio) and torch.equal(resumed.frames, straight.frames)
    logs = [[json.loads(x) for x in (tmp_path / run / "losses.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]
    assert logs[0] == logs[1] and [r["iteration"] for r in logs[0]] == list(range(6))
    assert all(math.isfinite(r["total"]) for r in logs[0])
    assert logs[0][-1]["syn_lr"] != logs[0][0]["syn_lr"]  # the step size is learnt (and resumed exactly)
    init = avdistill.distill(tiny_dataset_file, "random", ipc=1, seed=2, progress=False)
    assert torch.equal(init.labels, straight.labels) and not torch.allclose(init.frames, straight.frames)


@pytest.mark.parametrize("options, words", [
    ({"max_start_epoch": 3, "expert_epochs": 1, "expert_train_epochs": 3}, "needs experts trained for at least 4"),
    ({"syn_steps": 0}, "--syn-steps must be >= 1"),
    ({"head": "a"}, "reads only one modality"),
    ({"encoder": "small-bn"}, "batch norm"),
    ({"real_per_class": 8}, "real_per_class"),
])
def test_bad_options_are_config_errors(tiny_dataset_file, tmp_path, options, words):
    with pytest.raises(ConfigError, match=words):
        avdistill.distill(tiny_dataset_file, "mtt", ipc=1, progress=False, iterations=1,
                          expert_dir=str(tmp_path), **{**TINY, **options})


def test_cli_lists_the_mtt_options(capsys):
    from avdistill.cli import main

    assert main(["distill", "--method", "mtt", "--help"]) == 0
    text = capsys.readouterr().out
    for name in ("--syn-steps", "--expert-epochs", "--max-start-epoch", "--lr-lr", "--syn-lr-init", "--num-experts",
                 "--expert-train-epochs", "--batch-syn", "--expert-dir", "--lr-audio", "--lr-frames"):
        assert name in text
    assert "--real-per-class" not in text
