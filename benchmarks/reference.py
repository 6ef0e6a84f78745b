"""The faithful reference: one DM/AVDD iteration as the public AVDD code spends it.

Read from github.com/sakshamsingh1/AVDD, ``main_DM_AV.py`` (the training loop) and
``nets/audio_net.py`` (the ConvNet). Every iteration there:

1. ``set_seed(base + it)``, fresh networks (``get_network``), every parameter
   ``requires_grad = False`` (frozen: no weight gradients), ``train()`` mode;
2. one DSA seed for the whole iteration (the same ``seed`` for every class, real and
   synthetic, both modalities);
3. for every class c, separately: draw ``batch_real`` = 128 real pairs of c (``permutation[:128]``,
   so the whole class when it is smaller), take c's synthetic rows, expand them with the IDM
   factor (``number_sign_augment``), augment both with the iteration's seed, embed the real
   pairs (frozen network, input without gradient: no autograd graph is built) and the synthetic
   ones, build c's loss (DM: the two per-modality mean distances; AVDD: + 10 x joint + 10 x
   modality-gap matching), ``zero_grad``, ``backward``, ``optimizer.step()`` (SGD, momentum 0.5,
   on the whole synthetic tensors);
4. herding initialisation (precomputed indices) with the IDM factor 2.

This module does the same with avdistill's building blocks, so both arms of a comparison draw
the same things: the encoders of iteration i are avdistill's (same seeds, same architecture, with
PyTorch's ``nn.AvgPool2d`` as in the AVDD code), the DSA transformation, the IDM expansion and the
herding/real initial set are avdistill's functions, and the real pairs of class c are the ones
avdistill's sampler picks at that iteration. Where it differs from the AVDD code:

- the seeds: avdistill derives the encoder, augmentation and real-batch seeds from (seed, iteration)
  instead of ``set_seed(178645 + it)`` and numpy's global permutation;
- herding: the AVDD code reads precomputed indices from a pickle; here the initial set is built by
  avdistill's ``initial_synthetic`` (the same function as the avdistill arm), and timed apart from
  the iterations in both arms;
- the loss is summed in float32 exactly as written there, but ``loss += loss_c.item()`` (a
  device sync, free on a CPU) and the logging are left out.

:func:`run` counts what it really embeds: ``min(128, class size)`` real pairs per class and the
expanded synthetic rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from avdistill.augment import DSA
from avdistill.data.dataset import AVDataset
from avdistill.factor import expand
from avdistill.methods.base import get_method, make_config
from avdistill.methods.initial_set import initial_synthetic
from avdistill.models import get_encoders
from avdistill.models.pooling import AvgPool2x2
from avdistill.seeding import derive_seed, generator


def avdd_code_encoders(preset: str, dataset: AVDataset, seed: int, iteration: int) -> tuple[nn.Module, nn.Module]:
    """Iteration `iteration`'s frozen random encoders, with the AVDD code's ``nn.AvgPool2d`` pooling."""
    prep = dataset.preprocessing
    pair = get_encoders(preset, prep.audio_shape, prep.frame_shape, derive_seed(seed, "encoders", iteration))
    for net in pair:
        for name, module in list(net.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, AvgPool2x2):
                    setattr(module, child_name, nn.AvgPool2d(2))
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
    return pair


def class_loss(method: str, lam_jm: float, lam_mgm: float, ra, rv, sa, sv) -> torch.Tensor:
    """One class's loss as the AVDD code writes it (DM: ``lam_jm = lam_mgm = 0`` and the cross terms skipped)."""
    loss = ((ra - sa) ** 2).sum() + ((rv - sv) ** 2).sum()
    if method == "avdd":
        loss = loss + lam_jm * (((ra + rv) - (sa + sv)) ** 2).sum()
        loss = loss + lam_mgm * (((ra + sv) - (rv + sa)) ** 2).sum()
    return loss


def run(dataset: AVDataset, method: str, ipc: int, options: dict, seed: int,
        on_iteration: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> dict:
    """The AVDD-code loop for `method` ('dm' or 'avdd') with avdistill's options (`options` as for
    ``avdistill.distill``). `on_iteration(i, audio, frames)` is called before iteration i and after the
    last. Returns {audio, frames, labels, real_embedded, synthetic_embedded}."""
    cfg = make_config(get_method(method), options)
    lam_jm, lam_mgm = (cfg.lam_jm, cfg.lam_mgm) if method == "avdd" else (0.0, 0.0)
    audio, frames, labels = initial_synthetic(dataset, ipc, cfg.init, seed, cfg.factor, cfg.herding, cfg.encoder)
    audio.requires_grad_(True), frames.requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [audio], "lr": cfg.lr_audio}, {"params": [frames], "lr": cfg.lr_frames}],
                                momentum=cfg.momentum)
    augment = DSA(cfg.augment)
    by_class = dataset.train.class_indices(dataset.num_classes)
    rows = [torch.nonzero(labels == c).flatten() for c in range(dataset.num_classes)]
    real_embedded = synthetic_embedded = 0
    for it in range(cfg.iterations):
        if on_iteration:
            on_iteration(it, audio, frames)
        f_audio, f_visual = avdd_code_encoders(cfg.encoder, dataset, seed, it)
        aug_seed = derive_seed(seed, "augment", it)  # one DSA seed per iteration, shared by every class
        g = generator(seed, "real_batch", it)
        for c, idx in enumerate(by_class):
            pick = idx[torch.randperm(len(idx), generator=g)[: cfg.real_per_class]]
            real_audio, real_frames, _ = dataset.model_inputs(dataset.train.subset(pick))
            syn_audio, syn_frames = expand(audio[rows[c]], cfg.factor), expand(frames[rows[c]], cfg.factor)
            with torch.no_grad():  # the AVDD code's frozen network on a gradient-free input: no graph either way
                ra = f_audio(augment(real_audio, aug_seed)).mean(0)
                rv = f_visual(augment(real_frames, aug_seed)).mean(0)
            sa = f_audio(augment(syn_audio, aug_seed)).mean(0)
            sv = f_visual(augment(syn_frames, aug_seed)).mean(0)
            loss = class_loss(method, lam_jm, lam_mgm, ra, rv, sa, sv)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            real_embedded += len(pick)
            synthetic_embedded += len(syn_audio)
    if on_iteration:
        on_iteration(cfg.iterations, audio, frames)
    return {"audio": audio.detach(), "frames": frames.detach(), "labels": labels,
            "real_embedded": real_embedded, "synthetic_embedded": synthetic_embedded}
