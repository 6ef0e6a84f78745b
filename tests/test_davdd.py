"""DAVDD: cross-modal terms never reach private parts, switches, the bank cache, exact resume, bad options."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import avdistill
import avdistill.methods.bank as bank_module
from avdistill.errors import ConfigError
from avdistill.methods.bank import BankConfig, load_or_train_bank
from avdistill.methods.davdd import (TERMS, DecoupledFeatures, Prototypes, common_intermodal_matching, davdd_loss,
                                     private_matching, sample_alignment)
from test_dm import interrupt_after_checkpoints

TINY_BANK = dict(bank_size=2, bank_epochs=(1,), decoupler_epochs=2, common_dim=8, private_dim=8, decoupler_hidden=16)
FAST = dict(iterations=4, real_per_class=6, init="real", factor=1, checkpoint_every=2, progress=False, **TINY_BANK)


def tiny(tmp_path, **overrides) -> dict:
    return {**FAST, "bank_dir": str(tmp_path / "banks"), **overrides}


def bank_info(folder) -> dict:
    """A cached bank's identity (config, dataset, version, code) with every entry's training figures."""
    entries = []
    for path in sorted(folder.glob("entry*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        entries.append(json.loads(meta["info"]))
        identity = json.loads(meta["identity"])
    return {**identity, "entries": entries}


def leaf_features(C: int = 3, n: int = 2, dim: int = 5, seed: int = 0) -> DecoupledFeatures:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(C).repeat_interleave(n)
    make = lambda: torch.randn(C * n, dim, generator=g, dtype=torch.float64).requires_grad_(True)  # noqa: E731
    return DecoupledFeatures(make(), make(), make(), make(), labels, make(), make(), make(), make(), labels)


def test_cross_modal_terms_give_private_parts_no_gradient():
    d = leaf_features()
    private = [d.real_private_audio, d.real_private_visual, d.syn_private_audio, d.syn_private_visual]
    common = [d.syn_common_audio, d.syn_common_visual]
    cross = common_intermodal_matching(d, 3) + sample_alignment(d, 3)
    grads = torch.autograd.grad(cross, private + common, allow_unused=True)
    assert all(g is None for g in grads[:4])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[4:])
    # and the private term is per modality: audio-private never sees visual-private
    g_audio = torch.autograd.grad(private_matching(d, 3), private + common, allow_unused=True)
    assert g_audio[2].abs().sum() > 0 and g_audio[3].abs().sum() > 0 and all(g is None for g in g_audio[4:])


def test_cross_modal_gradient_reaches_the_synthetic_data_only_through_common_heads(tiny_dataset_file, tmp_path):
    bank = load_or_train_bank(tiny_dataset_file, BankConfig(bank_size=1, bank_epochs=(1,), decoupler_epochs=2,
                                                            common_dim=8, private_dim=8, decoupler_hidden=16),
                              root=tmp_path)
    entry = bank.entries[0]
    audio, frames, labels = tiny_dataset_file.model_inputs(tiny_dataset_file.train)
    syn_audio, syn_frames = audio[::6].clone().requires_grad_(True), frames[::6].clone().requires_grad_(True)

    def cross_modal_grads():
        sca, spa = entry.decoupler_audio(entry.audio(syn_audio))
        scv, spv = entry.decoupler_visual(entry.visual(syn_frames))
        rca, rpa = entry.decoupler_audio(entry.audio(audio))
        rcv, rpv = entry.decoupler_visual(entry.visual(frames))
        d = DecoupledFeatures(rca, rcv, rpa, rpv, labels, sca, scv, spa, spv, labels[::6])
        cross = common_intermodal_matching(d, 4) + sample_alignment(d, 4)
        return torch.autograd.grad(cross, [syn_audio, syn_frames, spa, spv], allow_unused=True)

    for dec in (entry.decoupler_audio, entry.decoupler_visual):
        dec.requires_grad_(True)
    g_audio, g_frames, g_private_audio, g_private_visual = cross_modal_grads()
    assert g_private_audio is None and g_private_visual is None
    assert g_audio.abs().sum() > 0 and g_frames.abs().sum() > 0
    sca, _ = entry.decoupler_audio(entry.audio(syn_audio))
    scv, _ = entry.decoupler_visual(entry.visual(syn_frames))
    (1 - torch.cosine_similarity(sca, scv)).sum().backward()
    for dec in (entry.decoupler_audio, entry.decoupler_visual):
        assert all(p.grad is None for p in dec.private.parameters())
        assert all(p.grad is not None for p in dec.common.parameters())
    # Replacing the private heads changes nothing in the cross-modal gradient w.r.t. the synthetic data.
    with torch.no_grad():
        for dec in (entry.decoupler_audio, entry.decoupler_visual):
            for p in dec.private.parameters():
                p.normal_()
    g_audio2, g_frames2, _, _ = cross_modal_grads()
    assert torch.equal(g_audio, g_audio2) and torch.equal(g_frames, g_frames2)


def test_ema_prototypes_start_at_the_first_batch_then_average():
    d = leaf_features(C=2, n=1, dim=3)
    protos = Prototypes(entries=2, num_classes=2, dim=3, momentum=0.75, device="cpu")
    first_a, _ = protos.update(1, d, 2)
    assert torch.allclose(first_a.double(), d.real_common_audio.detach())
    assert protos.state["prototypes_seen"].tolist() == [0.0, 1.0] and protos.state["prototypes_audio"][0].abs().sum() == 0
    d2 = leaf_features(C=2, n=1, dim=3, seed=1)
    second_a, _ = protos.update(1, d2, 2)
    expected = 0.75 * d.real_common_audio.detach() + 0.25 * d2.real_common_audio.detach()
    assert torch.allclose(second_a.double(), expected, atol=1e-6)


def test_davdd_end_to_end_logs_every_term_with_defaults_shape(tiny_dataset_file, tmp_path):
    syn = avdistill.distill(tiny_dataset_file, "davdd", ipc=2, seed=0, out=tmp_path / "run",
                            **tiny(tmp_path, init="herding", factor=2, herding_epochs=1))
    assert syn.factor == 2 and syn.audio.shape == (8, 1, 16, 21) and syn.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    log = [json.loads(x) for x in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(4))
    assert set(log[0]) == {"iteration", "total", *TERMS}
    assert all(r["total"] == pytest.approx(sum(r[t] for t in TERMS), rel=1e-5) for r in log)
    meta = json.loads((tmp_path / "run" / "synthetic.json").read_text())["meta"]
    assert meta["method"] == "davdd" and meta["config"]["bank"] == "pretrained" and "torch" in meta["versions"]


@pytest.mark.parametrize("term", TERMS)
def test_a_switched_off_term_is_absent_and_contributes_nothing(tiny_dataset_file, tmp_path, term):
    weights = {"lam_private": 2.0, "lam_cim": 0.5, "lam_sample": 3.0, "lam_dist": 1.5, f"lam_{term}": 0.0}
    avdistill.distill(tiny_dataset_file, "davdd", ipc=1, seed=1, out=tmp_path / "run", **tiny(tmp_path, **weights))
    for r in map(json.loads, (tmp_path / "run" / "losses.jsonl").read_text().splitlines()):
        assert set(r) == {"iteration", "total", *(t for t in TERMS if t != term)}
        assert r["total"] == pytest.approx(sum(weights[f"lam_{t}"] * r[t] for t in TERMS if t != term), rel=1e-5)


def test_switched_off_terms_leave_the_loss_of_the_others_unchanged():
    d = leaf_features()
    protos = (torch.zeros(3, 5, dtype=torch.float64), torch.ones(3, 5, dtype=torch.float64))
    with torch.no_grad():
        full = davdd_loss(d, protos, dict.fromkeys(TERMS, 1.0), 3)
        without_cim = davdd_loss(d, protos, {"private": 1.0, "sample": 1.0, "dist": 1.0}, 3)
    assert "cim" not in without_cim
    assert float(without_cim["total"]) == pytest.approx(float(full["total"] - full["cim"]), rel=1e-12)


def test_bank_switches_give_their_own_cached_banks(tiny_dataset_file, tmp_path):
    for kind, decoupler in (("random", "mlp"), ("pretrained", "none")):
        avdistill.distill(tiny_dataset_file, "davdd", ipc=1, out=tmp_path / kind, **tiny(tmp_path, bank=kind,
                                                                                         decoupler=decoupler))
    infos = sorted((bank_info(folder) for folder in (tmp_path / "banks").iterdir()), key=lambda i: i["config"]["bank"])
    assert [i["config"]["bank"] for i in infos] == ["pretrained", "random"]
    assert [e["epochs"] for e in infos[1]["entries"]] == [0, 0]  # a random bank is never trained
    assert infos[0]["config"]["decoupler"] == "none" and infos[0]["entries"][0]["decoupler_losses"] == {}


def test_bank_is_cached_and_reused_by_later_runs_and_ipcs(tiny_dataset_file, tmp_path, monkeypatch):
    trainings = []
    real_train = bank_module.train_networks
    monkeypatch.setattr(bank_module, "train_networks", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    avdistill.distill(tiny_dataset_file, "davdd", ipc=1, seed=0, **tiny(tmp_path))
    assert len(trainings) == 2
    (folder,) = (tmp_path / "banks").iterdir()
    info = bank_info(folder)
    assert info["dataset"] == tiny_dataset_file.checksum and "torch" in info["entries"][0]["versions"]
    assert info["avdistill"] == avdistill.__version__ and len(info["code"]) == 64  # the code that trained it
    with safe_open(str(folder / "entry0.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"audio.features.0.weight", "decoupler_audio.common.0.weight", "decoupler_visual.private.2.weight",
            "decoupler_audio.mean"} <= keys
    avdistill.distill(tiny_dataset_file, "davdd", ipc=2, seed=3, **tiny(tmp_path))
    assert len(trainings) == 2  # the second run (other seed and IPC) loaded the bank


def test_interrupted_run_resumes_to_the_same_result_with_the_ema_state(tiny_dataset_file, tmp_path, monkeypatch):
    options = tiny(tmp_path, iterations=6, ema_momentum=0.5)
    straight = avdistill.distill(tiny_dataset_file, "davdd", ipc=2, seed=4, out=tmp_path / "straight", **options)
    interrupt_after_checkpoints(monkeypatch, 2)  # dies at iteration 4
    with pytest.raises(KeyboardInterrupt):
        avdistill.distill(tiny_dataset_file, "davdd", ipc=2, seed=4, out=tmp_path / "resumed", **options)
    with safe_open(str(tmp_path / "resumed" / "checkpoint.safetensors"), framework="pt") as f:
        assert f.get_tensor("state.prototypes_seen").sum() > 0 and "state.prototypes_audio" in f.keys()
    resumed = avdistill.distill(tiny_dataset_file, "davdd", ipc=2, seed=4, out=tmp_path / "resumed", **options)
    assert torch.equal(resumed.audio, straight.audio) and torch.equal(resumed.frames, straight.frames)
    read = lambda name: (tmp_path / name / "losses.jsonl").read_text().splitlines()  # noqa: E731
    assert read("resumed") == read("straight") and len(read("straight")) == 6


@pytest.mark.parametrize("bad, message", [
    ({"bank": "imagenet"}, "--bank must be one of"),
    ({"decoupler": "transformer"}, "--decoupler must be one of"),
    ({"bank_size": 0}, "--bank-size must be >= 1"),
    ({"bank_epochs": (2, 0)}, "--bank-epochs"),
    ({"nce_temperature": 0.0}, "--nce-temperature"),
    ({"ema_momentum": 1.0}, "--ema-momentum"),
    ({"lam_private": 0.0, "lam_cim": 0.0, "lam_sample": 0.0, "lam_dist": 0.0}, "every DAVDD term is switched off"),
    ({"lam_cim": -1.0}, "--lam-cim must not be negative"),
    ({"lam_nope": 1.0}, "unknown option"),
])
def test_bad_options_are_config_errors(tiny_dataset_file, tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        avdistill.distill(tiny_dataset_file, "davdd", ipc=1, **{**tiny(tmp_path), **bad})


def test_method_options_reach_the_command_line(capsys):
    from avdistill.cli import main

    main(["distill", "--method", "davdd", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--bank", "--bank-dir", "--decoupler", "--lam-private", "--lam-cim", "--lam-sample", "--lam-dist",
                 "--ema-momentum", "--bank-epochs"):
        assert flag in shown
