"""`--update per-class` against a transcription of AVDD's own per-class loop, and how it differs
from the default per-iteration update (docs/METHODS.md, "Update order")."""

from __future__ import annotations

import json

import pytest
import torch

import avdistill
from avdistill.augment import DSA
from avdistill.config import build_config
from avdistill.factor import expand
from avdistill.methods.avdd import AVDDConfig
from avdistill.methods.real_means import RealSampler
from avdistill.methods.synthesis import starting_set
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed

RUN = dict(ipc=2, seed=3, iterations=3, real_per_class=6, init="real", factor=2, lr_audio=0.05, lr_frames=0.05,
           progress=False)


def avdd_code_loop(data, audio, frames, *, ipc, factor, iterations, lr, lam, seed, real_per_class, encoder):
    """AVDD's distillation loop (main_DM_AV.py of github.com/sakshamsingh1/AVDD), transcribed onto avdistill's
    encoders, real batches and DSA seeds: every iteration fresh frozen encoders and one DSA seed; then, class by
    class, that class's real batch and IDM-expanded synthetic rows go through the encoders, its loss
    DM + λ_icm·JM + λ_cgm·CGM is computed, and ONE SGD optimiser over the whole tensors (one momentum buffer)
    takes a step: zero_grad, backward, step. Returns the per-iteration loss (summed over classes) and the set."""
    aud_syn = audio.clone().requires_grad_(True)
    img_syn = frames.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": aud_syn, "lr": lr}, {"params": img_syn, "lr": lr}], momentum=0.5)
    sampler, augment, prep = RealSampler(data, real_per_class), DSA(), data.preprocessing
    losses = []
    for it in range(iterations):
        net_audio, net_frame = get_encoders(encoder, prep.audio_shape, prep.frame_shape,
                                            derive_seed(seed, "encoders", it), "cpu")
        for p in (*net_audio.parameters(), *net_frame.parameters()):
            p.requires_grad = False
        dsa_seed = derive_seed(seed, "augment", it)
        real_audio, real_frames, real_labels = sampler.sample(seed, it)
        loss = 0.0
        for c in range(data.num_classes):
            aud_real, img_real = real_audio[real_labels == c], real_frames[real_labels == c]
            curr_aud_syn = expand(aud_syn[c * ipc:(c + 1) * ipc], factor)
            curr_img_syn = expand(img_syn[c * ipc:(c + 1) * ipc], factor)
            aud_real, curr_aud_syn = augment(aud_real, dsa_seed), augment(curr_aud_syn, dsa_seed)
            img_real, curr_img_syn = augment(img_real, dsa_seed), augment(curr_img_syn, dsa_seed)
            embd_aud_real, embd_aud_syn = net_audio(aud_real).detach(), net_audio(curr_aud_syn)
            embd_img_real, embd_img_syn = net_frame(img_real).detach(), net_frame(curr_img_syn)
            ar, asy = embd_aud_real.mean(0), embd_aud_syn.mean(0)
            vr, vs = embd_img_real.mean(0), embd_img_syn.mean(0)
            loss_c = torch.sum((ar - asy) ** 2) + torch.sum((vr - vs) ** 2)
            loss_c = loss_c + lam * torch.sum(((ar + vr) - (asy + vs)) ** 2)  # implicit cross matching
            loss_c = loss_c + lam * torch.sum(((ar + vs) - (vr + asy)) ** 2)  # cross-modal gap matching
            optimizer.zero_grad()
            loss_c.backward()
            optimizer.step()
            loss += loss_c.item()
        losses.append(loss)
    return losses, aud_syn.detach(), img_syn.detach()


def logged_totals(folder) -> list[float]:
    return [json.loads(line)["total"] for line in (folder / "losses.jsonl").read_text().splitlines()]


def test_per_class_update_reproduces_the_avdd_code_loop(tiny_dataset_file, tmp_path):
    syn = avdistill.distill(tiny_dataset_file, "avdd", update="per-class", lam_jm=2.0, lam_mgm=2.0, out=tmp_path,
                            **RUN)
    cfg = build_config(AVDDConfig, {k: v for k, v in RUN.items() if k not in ("ipc", "seed", "progress")})
    audio, frames, labels = starting_set(tiny_dataset_file, RUN["ipc"], cfg, RUN["seed"])
    assert labels.tolist() == torch.arange(4).repeat_interleave(2).tolist()  # class c owns rows c*ipc..(c+1)*ipc
    losses, aud_syn, img_syn = avdd_code_loop(tiny_dataset_file, audio, frames, ipc=2, factor=2, iterations=3,
                                              lr=0.05, lam=2.0, seed=3, real_per_class=6, encoder=cfg.encoder)
    assert not torch.allclose(aud_syn, audio, atol=1e-3)  # the loop moved the set
    assert logged_totals(tmp_path) == pytest.approx(losses, rel=1e-5)
    assert torch.allclose(syn.audio, aud_syn, atol=1e-5) and torch.allclose(syn.frames, img_syn, atol=1e-5)


def test_the_two_update_orders_start_alike_and_then_differ(tiny_dataset_file, tmp_path):
    """Iteration 0's loss is the same (momentum is still zero on a class's rows when its loss is taken);
    afterwards the per-class update has moved every row by the other classes' momentum steps too."""
    per_class = avdistill.distill(tiny_dataset_file, "dm", update="per-class", out=tmp_path / "c", **RUN)
    per_iteration = avdistill.distill(tiny_dataset_file, "dm", out=tmp_path / "i", **RUN)
    first_c, *rest_c = logged_totals(tmp_path / "c")
    first_i, *rest_i = logged_totals(tmp_path / "i")
    assert first_c == pytest.approx(first_i, rel=1e-6)
    assert rest_c != pytest.approx(rest_i, rel=1e-3)
    assert not torch.allclose(per_class.frames, per_iteration.frames, atol=1e-4)


def test_accumulated_parts_take_the_step_of_the_summed_loss_and_log_its_terms(tmp_path):
    """The loop's `accumulate`: one backward pass per part, ONE step on the summed gradients: the step of the whole
    loss (per-part steps differ); the log holds the terms summed over the parts."""
    from avdistill.methods.loop import optimise_synthetic
    from avdistill.run_folder import RunFolder

    g = torch.Generator().manual_seed(0)
    audio, frames = torch.randn(4, 1, 2, 3, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    target = torch.randn(4, generator=g)

    def part_loss(iteration, a, f, part):  # part k: rows 2k and 2k + 1
        rows = slice(2 * part, 2 * part + 2)
        value = ((a[rows].flatten(1).sum(1) * f[rows].flatten(1).sum(1) - target[rows] * (iteration + 1)) ** 2).sum()
        return {"total": value, "fit": value}

    def whole_loss(iteration, a, f):
        return {name: part_loss(iteration, a, f, 0)[name] + part_loss(iteration, a, f, 1)[name] for name in ("total", "fit")}

    common = dict(iterations=3, lr_audio=0.01, lr_frames=0.02, momentum=0.5, fingerprint="x", progress=False)
    whole = optimise_synthetic(audio, frames, whole_loss, **common)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    summed = optimise_synthetic(audio, frames, part_loss, parts=2, accumulate=True, folder=folder, **common)
    stepwise = optimise_synthetic(audio, frames, part_loss, parts=2, **common)
    assert all(torch.allclose(s, w, rtol=0, atol=1e-6) for s, w in zip(summed, whole))
    assert not torch.allclose(stepwise[1], whole[1], atol=1e-4)
    logged = [json.loads(line) for line in folder.losses.read_text().splitlines()]
    assert [r["iteration"] for r in logged] == [0, 1, 2]
    first = whole_loss(0, audio, frames)["total"].item()
    assert logged[0]["total"] == pytest.approx(first, rel=1e-6) and logged[0]["fit"] == logged[0]["total"]
