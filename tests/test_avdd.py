"""AVDD: the literal loss terms, the equal-weight identity, the method end to end, resume."""

from __future__ import annotations

import json

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError
from avdistill.methods.avdd import avdd_loss
from avdistill.methods.dm import dm_loss
from avdistill.methods.matching import ClassMeans
from test_dm import interrupt_after_checkpoints

SMALL = dict(iterations=6, real_per_class=6, herding_epochs=2, checkpoint_every=2, progress=False)


def random_means(seed: int = 0, classes: int = 5, dim: int = 16) -> ClassMeans:
    g = torch.Generator().manual_seed(seed)
    return ClassMeans(*(torch.randn(classes, dim, generator=g, dtype=torch.float64) for _ in range(4)))


def test_terms_on_known_means():
    m = ClassMeans(real_audio=torch.tensor([[1.0, 0.0]]), real_visual=torch.tensor([[0.0, 2.0]]),
                   syn_audio=torch.tensor([[0.0, 0.0]]), syn_visual=torch.tensor([[0.0, 1.0]]))
    # Δa = (1, 0), Δv = (0, 1): DM = 1 + 1, JM = ||(1, 1)||² = 2, MGM = ||(1, -1)||² = 2
    terms = avdd_loss(m, lam_jm=3.0, lam_mgm=0.5)
    assert {k: float(v) for k, v in terms.items()} == {"total": 2 + 6 + 1, "dm_audio": 1, "dm_visual": 1,
                                                       "jm": 2, "mgm": 2}


@pytest.mark.parametrize("lam", [0.0, 1.0, 10.0, 37.5])
def test_equal_weights_are_exactly_a_rescaled_dm_loss(lam):
    m = random_means(int(lam))
    assert float(avdd_loss(m, lam, lam)["total"]) == pytest.approx((1 + 2 * lam) * float(dm_loss(m)["total"]),
                                                                   rel=1e-12)


def test_unequal_weights_add_the_audio_visual_coupling():
    m = random_means(1)
    da, dv = m.real_audio - m.syn_audio, m.real_visual - m.syn_visual
    lam_jm, lam_mgm = 10.0, 2.0
    expected = (1 + lam_jm + lam_mgm) * (da.pow(2).sum() + dv.pow(2).sum()) + 2 * (lam_jm - lam_mgm) * (da * dv).sum()
    assert float(avdd_loss(m, lam_jm, lam_mgm)["total"]) == pytest.approx(float(expected), rel=1e-12)


def test_mismatched_embedding_sizes_are_a_config_error():
    m = ClassMeans(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="4-d audio and 3-d visual"):
        avdd_loss(m, 1.0, 1.0)


def test_equal_weights_act_as_a_larger_dm_step(tiny_dataset_file, tmp_path):
    """AVDD at λ_jm = λ_mgm = λ with lr η follows the same path as DM with lr (1 + 2λ) η."""
    common = dict(ipc=2, seed=2, iterations=4, real_per_class=6, init="real", factor=1, progress=False)
    avdd = avdistill.distill(tiny_dataset_file, "avdd", lr_audio=0.01, lr_frames=0.01, lam_jm=2.0, lam_mgm=2.0,
                             out=tmp_path, **common)
    dm = avdistill.distill(tiny_dataset_file, "dm", lr_audio=0.05, lr_frames=0.05, **common)
    start = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=2, progress=False)
    assert not torch.allclose(avdd.frames, start.frames, atol=1e-4)
    assert torch.allclose(avdd.frames, dm.frames, atol=1e-4) and torch.allclose(avdd.audio, dm.audio, atol=1e-4)
    for r in map(json.loads, (tmp_path / "losses.jsonl").read_text().splitlines()):
        assert r["total"] == pytest.approx(5 * (r["dm_audio"] + r["dm_visual"]), rel=1e-4)
        assert r["total"] == pytest.approx(r["dm_audio"] + r["dm_visual"] + 2 * (r["jm"] + r["mgm"]), rel=1e-5)


def test_avdd_end_to_end_with_herding_init_and_factor(tiny_dataset_file, tmp_path):
    syn = avdistill.distill(tiny_dataset_file, "avdd", ipc=2, seed=0, out=tmp_path, **SMALL)
    assert syn.factor == 2 and syn.audio.shape == (8, 1, 16, 21) and syn.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert syn.training_pairs()[1].shape == (32, 1, 16, 16)
    log = [json.loads(x) for x in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(6))
    assert set(log[0]) == {"iteration", "total", "dm_audio", "dm_visual", "jm", "mgm"}
    meta = json.loads((tmp_path / "synthetic.json").read_text())
    assert meta["factor"] == 2 and meta["meta"]["config"]["lam_jm"] == 10.0 and meta["meta"]["config"]["init"] == "herding"


def test_interrupted_avdd_run_resumes_to_the_same_result(tiny_dataset_file, tmp_path, monkeypatch):
    straight = avdistill.distill(tiny_dataset_file, "avdd", ipc=2, seed=4, out=tmp_path / "straight", **SMALL)
    interrupt_after_checkpoints(monkeypatch, 2)  # dies at iteration 4
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "avdd", ipc=2, seed=4, out=tmp_path / "resumed", **SMALL)
    resumed = avdistill.distill(tiny_dataset_file, "avdd", ipc=2, seed=4, out=tmp_path / "resumed", **SMALL)
    assert torch.equal(resumed.audio, straight.audio) and torch.equal(resumed.frames, straight.frames)
    log = [json.loads(x) for x in (tmp_path / "resumed" / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(6))
    assert log == [json.loads(x) for x in (tmp_path / "straight" / "losses.jsonl").read_text().splitlines()]


def test_method_options_reach_the_command_line(capsys):
    from avdistill.cli import main

    main(["distill", "--method", "avdd", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--lam-jm", "--lam-mgm", "--factor", "--init", "--herding-space", "(default: 5000)"):
        assert flag in shown
