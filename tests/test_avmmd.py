"""AV-MMD: the kernel terms on known embeddings (the joint kernel sees the pairing, the marginal one does
not; the wide-kernel limit is mean matching; the Gram-form cross-covariance), the exact class split, the
IDM factor chosen per IPC, the method end to end, determinism, resume and bad options."""

from __future__ import annotations

import json

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError
from avdistill.methods.avmmd import (ClassPairs, avmmd_loss, class_cross_covariance, class_mmd, median_bandwidth,
                                     squared_distances)
from avdistill.methods.matching import Embeddings
from test_dm import interrupt_after_checkpoints

SMALL = dict(iterations=6, real_per_class=6, herding_epochs=1, checkpoint_every=2, progress=False)
SCALES = (0.5, 1.0, 2.0)


def gaussian(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_squared_distances_and_median_bandwidth_on_known_points():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert torch.allclose(squared_distances(x, x), torch.tensor([[0.0, 25, 100], [25, 0, 25], [100, 25, 0]]))
    assert float(median_bandwidth(x)) == 25.0  # distinct pairs: 25, 100, 25


def test_identical_sets_have_zero_mmd_and_other_sets_positive():
    a, v = gaussian(8, 5, 0), gaussian(8, 5, 1)
    for kernel in ("joint", "marginal"):
        assert float(class_mmd(ClassPairs(a, v, a, v), kernel, SCALES)) == pytest.approx(0, abs=1e-12)
        assert float(class_mmd(ClassPairs(a, v, a[:3] + 1, v[:3]), kernel, SCALES)) > 1e-3


def test_joint_kernel_sees_the_pairing_the_marginal_kernel_does_not():
    """Synthetic pairs that re-pair the real audio with other real frames have the real marginals exactly."""
    a, v = gaussian(6, 4, 2), gaussian(6, 4, 3)
    swapped = ClassPairs(a, v, a, v.roll(1, dims=0))
    assert float(class_mmd(swapped, "marginal", SCALES)) == pytest.approx(0, abs=1e-12)
    assert float(class_mmd(swapped, "joint", SCALES)) > 0.05


def test_wide_joint_kernel_reduces_to_bandwidth_scaled_mean_matching():
    """exp(−d/s) ≈ 1 − d/s for large s, so s/2 · MMD² → ||Δa||²/σ_a² + ||Δv||²/σ_v² (the linear kernel: DM)."""
    p = ClassPairs(gaussian(10, 3, 4), gaussian(10, 3, 5), gaussian(4, 3, 6) + 0.5, gaussian(4, 3, 7))
    s = 1e5
    expected = ((p.real_audio.mean(0) - p.syn_audio.mean(0)).pow(2).sum() / p.sigma_audio
                + (p.real_visual.mean(0) - p.syn_visual.mean(0)).pow(2).sum() / p.sigma_visual)
    assert float(s / 2 * class_mmd(p, "joint", (s,))) == pytest.approx(float(expected), rel=1e-3)


def test_cross_covariance_in_gram_form_equals_the_d_by_d_matrices():
    p = ClassPairs(gaussian(9, 4, 8), gaussian(9, 3, 9), gaussian(5, 4, 10), gaussian(5, 3, 11))

    def cov(a, v):
        a, v = (a - a.mean(0)) / p.sigma_audio.sqrt(), (v - v.mean(0)) / p.sigma_visual.sqrt()
        return a.T @ v / len(a)

    direct = (cov(p.real_audio, p.real_visual) - cov(p.syn_audio, p.syn_visual)).pow(2).sum()
    assert float(class_cross_covariance(p)) == pytest.approx(float(direct), rel=1e-10)


def embeddings(classes: int, real: int, syn: int, seed: int) -> Embeddings:
    g = torch.Generator().manual_seed(seed)
    draw = lambda n: torch.randn(classes * n, 6, generator=g, dtype=torch.float64)  # noqa: E731
    labels = lambda n: torch.arange(classes).repeat_interleave(n)  # noqa: E731
    return Embeddings(draw(real), draw(real), labels(real), draw(syn), draw(syn), labels(syn))


def test_loss_is_a_sum_of_per_class_losses_so_the_class_split_is_exact():
    lam = {"mean": 1.0, "mmd": 30.0, "cov": 2.0}
    e = embeddings(4, 5, 3, 12)
    whole = avmmd_loss(e, 4, lam, "joint", SCALES)
    parts = []
    for classes in ([0, 1], [2, 3]):  # each process's share, relabelled 0..len-1 as the matcher does
        r, s = torch.isin(e.real_labels, torch.tensor(classes)), torch.isin(e.syn_labels, torch.tensor(classes))
        parts.append(avmmd_loss(Embeddings(e.real_audio[r], e.real_visual[r], e.real_labels[r] - classes[0],
                                           e.syn_audio[s], e.syn_visual[s], e.syn_labels[s] - classes[0]),
                                2, lam, "joint", SCALES))
    for name in ("total", "mean", "mmd", "cov"):
        assert float(whole[name]) == pytest.approx(float(parts[0][name] + parts[1][name]), rel=1e-12)
    assert float(whole["total"]) == pytest.approx(float(whole["mean"] + 30 * whole["mmd"] + 2 * whole["cov"]),
                                                  rel=1e-12)


def test_switched_off_terms_are_not_computed_and_a_class_needs_two_real_pairs():
    e = embeddings(2, 3, 2, 13)
    assert set(avmmd_loss(e, 2, {"mmd": 1.0}, "joint", SCALES)) == {"total", "mmd"}
    one = Embeddings(e.real_audio[2:], e.real_visual[2:], e.real_labels[2:], e.syn_audio, e.syn_visual, e.syn_labels)
    with pytest.raises(ConfigError, match="class 0 has 1 real pair"):
        avmmd_loss(one, 2, {"mmd": 1.0}, "joint", SCALES)


def test_end_to_end_chooses_the_factor_per_ipc_and_logs_every_term(tiny_dataset_file, tmp_path):
    at_1 = avdistill.distill(tiny_dataset_file, "avmmd", ipc=1, seed=0, out=tmp_path / "one", lam_mmd=1.0,
                             lam_cov=1.0, factor_from_ipc=2, **SMALL)
    at_2 = avdistill.distill(tiny_dataset_file, "avmmd", ipc=2, seed=0, out=tmp_path / "two", lam_mmd=1.0,
                             lam_cov=1.0, factor_from_ipc=2, **SMALL)
    assert at_1.factor == 1 and at_1.audio.shape == (4, 1, 16, 21)
    assert at_2.factor == 2 and at_2.training_pairs()[1].shape == (32, 1, 16, 16)
    header = json.loads((tmp_path / "two" / "synthetic.json").read_text())
    assert header["factor"] == 2 and header["meta"]["config"]["factor"] == 0  # chosen, and the option as given
    log = [json.loads(x) for x in (tmp_path / "two" / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(6))
    assert all(r["total"] == pytest.approx(r["mean"] + r["mmd"] + r["cov"], rel=1e-5) for r in log)
    start = avdistill.distill(tiny_dataset_file, "herding", ipc=2, seed=0, progress=False, feature_epochs=1)
    assert not torch.allclose(at_2.frames, start.frames, atol=1e-3)  # the set moved away from its init


def test_automatic_factor_follows_the_ipc_and_the_packing_rule(tiny_dataset):
    from avdistill.methods.avmmd import AVMMDConfig

    cfg = AVMMDConfig(factor_from_ipc=2, pack="shrink")  # the tiny dataset has 12 training pairs per class
    assert [cfg.factor_for(ipc, tiny_dataset) for ipc in (1, 2, 3, 4)] == [1, 2, 2, 1]  # 4 x 4 = 16 > 12
    repeat = AVMMDConfig(factor_from_ipc=2)  # the default packs IPC 4 too, repeating pairs
    assert [repeat.factor_for(ipc, tiny_dataset) for ipc in (1, 2, 3, 4)] == [1, 2, 2, 2]
    assert AVMMDConfig(factor=3).factor_for(1, tiny_dataset) == 3


def test_joint_mmd_alone_lowers_its_loss(tiny_dataset_file, tmp_path):
    avdistill.distill(tiny_dataset_file, "avmmd", ipc=2, seed=1, out=tmp_path, lam_mean=0.0, lam_mmd=1.0,
                      factor=1, init="real", iterations=30, real_per_class=12, lr_audio=100.0, lr_frames=100.0,
                      augment="none", progress=False)
    log = [json.loads(x)["mmd"] for x in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert sum(log[-5:]) < 0.8 * sum(log[:5])


def test_same_seed_bit_identical_other_seed_differs(tiny_dataset_file):
    run = lambda seed: avdistill.distill(tiny_dataset_file, "avmmd", ipc=1, seed=seed, init="real",  # noqa: E731
                                         iterations=3, real_per_class=6, progress=False)
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.frames, b.frames)
    assert not torch.equal(a.frames, c.frames)


def test_interrupted_run_resumes_to_the_same_result(tiny_dataset_file, tmp_path, monkeypatch):
    options = dict(ipc=2, seed=4, factor=2, lam_cov=1.0, **SMALL)
    straight = avdistill.distill(tiny_dataset_file, "avmmd", out=tmp_path / "straight", **options)
    interrupt_after_checkpoints(monkeypatch, 2)  # dies at iteration 4
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "avmmd", out=tmp_path / "resumed", **options)
    resumed = avdistill.distill(tiny_dataset_file, "avmmd", out=tmp_path / "resumed", **options)
    assert torch.equal(resumed.audio, straight.audio) and torch.equal(resumed.frames, straight.frames)
    read = lambda run: (tmp_path / run / "losses.jsonl").read_text().splitlines()  # noqa: E731
    assert read("resumed") == read("straight") and len(read("resumed")) == 6


def test_bank_encoders_train_the_bank_once_and_match_in_its_feature_space(tiny_dataset_file, tmp_path):
    banks = tmp_path / "banks"
    run = lambda encoders: avdistill.distill(tiny_dataset_file, "avmmd", ipc=1, seed=2, init="real",  # noqa: E731
                                             iterations=3, real_per_class=6, progress=False, encoders=encoders,
                                             bank_dir=str(banks))
    banked = run("bank")
    entries = sorted(banks.rglob("entry*"))
    assert len(entries) == 4  # DAVDD's bank size, trained on first use and cached
    stamps = [e.stat().st_mtime_ns for e in entries]
    again = run("bank")
    assert [e.stat().st_mtime_ns for e in sorted(banks.rglob("entry*"))] == stamps  # reused, not retrained
    assert torch.equal(again.frames, banked.frames) and torch.equal(again.audio, banked.audio)
    assert not torch.equal(run("random").frames, banked.frames)  # other encoders, other gradients
    assert banked.meta["config"]["encoders"] == "bank"


@pytest.mark.parametrize("options, words", [
    ({"encoders": "pretrained"}, "--encoders must be one of random, bank"),
    ({"bandwidths": "1,x"}, "--bandwidths must be comma-separated positive numbers"),
    ({"bandwidths": "0"}, "--bandwidths must be comma-separated positive numbers"),
    ({"kernel": "sum"}, "--kernel must be one of joint, marginal"),
    ({"real_per_class": 1}, "--real-per-class must be >= 2"),
    ({"factor": -1}, "--factor must be >= 0"),
    ({"factor_from_ipc": 0}, "--factor-from-ipc must be >= 1"),
    ({"lam_mean": 0.0, "lam_mmd": 0.0}, "every AV-MMD term is switched off"),
    ({"lam_mmd": -1.0}, "--lam-mmd must not be negative"),
])
def test_bad_options_are_clear_errors(tiny_dataset_file, options, words):
    with pytest.raises(ConfigError, match=words):
        avdistill.distill(tiny_dataset_file, "avmmd", ipc=1, iterations=1, progress=False, **options)


def test_options_and_ablation_rows_reach_the_command_line(capsys):
    from avdistill.cli import main
    from avdistill.methods import get_method
    from avdistill.methods.avmmd import AVMMDConfig

    main(["distill", "--method", "avmmd", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--lam-mmd", "--lam-cov", "--kernel", "--bandwidths", "--factor-from-ipc", "(default: 0)"):
        assert flag in shown
    rows = get_method("avmmd").ablations
    assert rows["+ joint MMD (AV-MMD)"] == {} and all(set(o) <= set(AVMMDConfig.__dataclass_fields__)
                                                      for o in rows.values())
