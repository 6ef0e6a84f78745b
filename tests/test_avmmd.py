"""AV-MMD: the kernel terms on known embeddings (the joint kernel sees the pairing, the marginal one does
not; the wide-kernel limit is mean matching; the Gram-form cross-covariance), the exact class split, the
IDM factor chosen per IPC, the method end to end, determinism, resume and bad options."""

from __future__ import annotations

import json

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError
from avdistill.methods.avmmd import (ClassPairs, avmmd_loss, class_cross_covariance, class_groups, class_mmd,
                                     median_bandwidth, squared_distances)
from avdistill.methods.matching import ClassEmbeddings, matched_subset
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


def embeddings(classes: int, real: int, syn: int, seed: int) -> list[ClassEmbeddings]:
    g = torch.Generator().manual_seed(seed)
    draw = lambda n: torch.randn(n, 6, generator=g, dtype=torch.float64)  # noqa: E731
    return [ClassEmbeddings(draw(real), draw(real), draw(syn), draw(syn)) for _ in range(classes)]


def test_loss_is_a_sum_of_per_class_losses_so_class_groups_and_the_class_split_are_exact():
    lam = {"mean": 1.0, "mmd": 30.0, "cov": 2.0}
    e = embeddings(4, 5, 3, 12)
    whole = avmmd_loss(e, lam, "joint", SCALES)
    parts = [avmmd_loss(e[:2], lam, "joint", SCALES), avmmd_loss(e[2:], lam, "joint", SCALES)]
    for name in ("total", "mean", "mmd", "cov"):
        assert float(whole[name]) == pytest.approx(float(parts[0][name] + parts[1][name]), rel=1e-12)
    assert float(whole["total"]) == pytest.approx(float(whole["mean"] + 30 * whole["mmd"] + 2 * whole["cov"]),
                                                  rel=1e-12)


def test_class_groups_fit_the_synthetic_batch_with_at_least_one_class():
    assert class_groups(10, 40, 256) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]]
    assert class_groups(10, 40, 0) == [list(range(10))]
    assert class_groups(3, 400, 256) == [[0], [1], [2]]  # a class larger than the batch still passes whole


def test_switched_off_terms_are_not_computed_and_a_class_needs_two_real_pairs():
    e = embeddings(2, 3, 2, 13)
    assert set(avmmd_loss(e, {"mmd": 1.0}, "joint", SCALES)) == {"total", "mmd"}
    one = [e[0], ClassEmbeddings(e[1].real_audio[:1], e[1].real_visual[:1], e[1].syn_audio, e[1].syn_visual)]
    with pytest.raises(ConfigError, match="a class has 1 real pair"):
        avmmd_loss(one, {"mmd": 1.0}, "joint", SCALES)


def test_backward_class_group_by_class_group_takes_the_same_step(tiny_dataset_file, tmp_path):
    """--syn-batch bounds the graph to a few classes; the gradients summed over the passes are the whole loss's,
    so the set is the same bit for bit (every pass holds at least two samples: one takes other kernels)."""
    run = lambda **o: avdistill.distill(tiny_dataset_file, "avmmd", ipc=2, seed=5, factor=2, lam_cov=1.0,  # noqa: E731
                                        matched_per_class=0, **SMALL, **o)
    whole, by_class, by_two = run(syn_batch=0), run(syn_batch=8), run(syn_batch=16)
    for other in (by_class, by_two):
        assert torch.equal(other.audio, whole.audio) and torch.equal(other.frames, whole.frames)


def test_matched_subset_is_seeded_per_step_and_class_and_sorted():
    picks = {(it, c): matched_subset(12, 5, 0, it, c) for it in range(3) for c in range(3)}
    for pick in picks.values():
        assert len(pick) == 5 and torch.equal(pick, pick.unique())  # distinct, in the expanded order
    assert len({tuple(p.tolist()) for p in picks.values()}) > 5  # fresh per step and per class
    assert torch.equal(matched_subset(12, 5, 0, 1, 2), picks[(1, 2)])
    assert not torch.equal(matched_subset(12, 5, 1, 1, 2), picks[(1, 2)])  # and per run seed


def test_matching_a_subset_changes_the_set_and_a_subset_of_all_is_all(tiny_dataset_file):
    run = lambda keep, seed=5: avdistill.distill(tiny_dataset_file, "avmmd", ipc=2, seed=seed,  # noqa: E731
                                                 factor=2, matched_per_class=keep, **SMALL)
    every, also_every, subset = run(0), run(8), run(3)  # 2 stored x 4 cells = 8 expanded samples per class
    assert torch.equal(every.frames, also_every.frames) and torch.equal(every.audio, also_every.audio)
    assert not torch.allclose(subset.frames, every.frames, atol=1e-4)
    assert torch.equal(run(3).frames, subset.frames)
    assert subset.meta["config"]["matched_per_class"] == 3


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
    ({"matched_per_class": -1}, "--matched-per-class must be >= 0"),
    ({"syn_batch": -1}, "--syn-batch must be >= 0"),
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
    for flag in ("--lam-mmd", "--lam-cov", "--kernel", "--bandwidths", "--factor-from-ipc", "(default: 0)",
                 "--matched-per-class", "--syn-batch"):
        assert flag in shown
    rows = get_method("avmmd").ablations
    assert rows["+ joint MMD (AV-MMD)"] == {} and all(set(o) <= set(AVMMDConfig.__dataclass_fields__)
                                                      for o in rows.values())
