"""Training networks on AV pairs: the one epoch loop (shuffled batches, DSA on each modality) that the
evaluation protocol, the feature networks of herding and k-center, DAVDD's pretrained bank and
MTT's experts all use, and the protocol's recipe of fresh encoders + head (:func:`train_networks`).

The loop (:func:`train_epochs`): per epoch, a permutation of the samples drawn from
``generator(seed, "shuffle")``, split into batches; each modality of a batch augmented with its own
DSA draw (per-sample parameters, seed ``derive_seed(seed, "augment", step, m)``, m = 0 audio,
1 visual); the caller's loss, then one optimiser step. A modality the networks do not read is
neither loaded into the loss nor augmented.

The recipe (:class:`TrainConfig`, AVDD's protocol): encoders and head seeded by the run, Adam
(lr 1e-3 audio encoder and head, 1e-4 visual encoder, weight decay 1e-4), 30 epochs, batch 32, lr
x0.1 after epochs 10 and 20.

Fixed epochs give a larger set more optimiser steps: a set expanded 4x by the factor trains 4x as
long. ``steps`` (> 0) separates the data from the training: exactly that many optimiser steps
whatever the set's size (epochs over seeded shuffles as above, the last one cut short), with the
milestones kept at the same fractions of training, i.e. at step ``round(m * steps / epochs)`` for
each milestone epoch m (under AVDD's recipe: steps/3 and 2*steps/3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from avdistill.augment import DEFAULT_STRATEGY, DSA
from avdistill.config import option
from avdistill.data.dataset import AVDataset, AVSplit
from avdistill.models import PRESETS, get_encoders
from avdistill.models.heads import HEADS
from avdistill.seeding import derive_seed, generator

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class TrainConfig:
    """How a fresh AV network is trained (the AVDD evaluation protocol)."""

    epochs: int = option(30, "training epochs per run (AVDD: 30)", minimum=1)
    batch_size: int = option(32, "training batch size (AVDD: 32)", minimum=1)
    lr_audio: float = option(1e-3, "Adam lr of the audio encoder (AVDD: 1e-3)", above=0)
    lr_visual: float = option(1e-4, "Adam lr of the visual encoder (AVDD: 1e-4)", above=0)
    lr_head: float = option(1e-3, "Adam lr of the fusion head (AVDD: 1e-3)", above=0)
    weight_decay: float = option(1e-4, "Adam weight decay (AVDD: 1e-4)")
    milestones: tuple[int, ...] = option((10, 20), "epochs after which the lr is multiplied by 0.1")
    encoder: str = option("small", "encoder preset of the evaluation networks", choices=tuple(PRESETS), what="encoder preset")
    head: str = option("ensemble", "fusion head: a, v, concat, sum, attention or ensemble", choices=tuple(HEADS), what="head")
    fusion_dim: int = option(0, "sum/attention heads: size of the common space (0: the smaller embedding)")
    attention_hidden: int = option(128, "attention head: hidden units of the score MLP (0: a linear score)")
    augment: str = option(DEFAULT_STRATEGY, "DSA ops applied during training, or 'none'", check=DSA)
    steps: int = option(0, "fixed-steps protocol: this many optimiser steps whatever the set's size, milestones "
                           "scaled to the same fractions of training (0: the AVDD protocol's fixed epochs)", minimum=0)


def milestone_steps(cfg: TrainConfig) -> list[int]:
    """The fixed-steps recipe's lr milestones: the epoch milestones at the same fractions of `cfg.steps`."""
    return [round(m * cfg.steps / cfg.epochs) for m in cfg.milestones]


def batches(data: Batch | AVSplit, dataset: AVDataset, device: str = "cpu") -> tuple[Callable[[torch.Tensor], Batch], int]:
    """(idx -> (audio, frames, labels) in model space on `device`, number of samples) of model-space tensors
    (a synthetic set) or a real split, normalised batch by batch."""
    if isinstance(data, AVSplit):
        return (lambda idx: tuple(t.to(device) for t in dataset.model_inputs(data.subset(idx)))), len(data)
    audio, frames, labels = data
    return (lambda idx: (audio[idx].to(device), frames[idx].to(device), labels[idx].to(device))), len(labels)


def train_epochs(loss: Callable[[torch.Tensor | None, torch.Tensor | None, torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, data: Batch | AVSplit, dataset: AVDataset, *, epochs: int,
                 batch_size: int, augment: DSA, seed: int, networks: list[nn.Module], device: str = "cpu",
                 modalities: tuple[str, ...] = ("audio", "visual"), scheduler=None,
                 after_epoch: Callable[[], None] | None = None, progress: bool = False, desc: str = "train",
                 steps: int = 0) -> None:
    """The epoch loop (see the module docstring): ``loss(audio, frames, labels)`` on augmented batches, where a
    modality not in `modalities` is None; `networks` are put in training mode each epoch.

    `steps` > 0: exactly that many optimiser steps instead of `epochs` epochs, the `scheduler` stepped
    after every optimiser step (its milestones count steps) instead of after every epoch.
    """
    batch, n = batches(data, dataset, device)
    shuffle = generator(seed, "shuffle")
    if steps:
        epochs = math.ceil(steps / math.ceil(n / batch_size))
    step = 0
    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=not progress):
        for net in networks:
            net.train()
        for idx in torch.randperm(n, generator=shuffle).split(batch_size):
            if steps and step == steps:
                break
            audio, frames, labels = batch(idx)
            audio = augment(audio, derive_seed(seed, "augment", step, 0), siamese=False) \
                if "audio" in modalities else None
            frames = augment(frames, derive_seed(seed, "augment", step, 1), siamese=False) \
                if "visual" in modalities else None
            value = loss(audio, frames, labels)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            step += 1
            if steps and scheduler is not None:
                scheduler.step()
        if not steps and scheduler is not None:
            scheduler.step()
        if after_epoch is not None:
            after_epoch()


def build_head(cfg: TrainConfig, audio_dim: int, visual_dim: int, num_classes: int) -> nn.Module:
    return HEADS[cfg.head](audio_dim, visual_dim, num_classes, fusion_dim=cfg.fusion_dim,
                           attention_hidden=cfg.attention_hidden)


def train_networks(train: Batch | AVSplit, dataset: AVDataset, cfg: TrainConfig, seed: int, device: str = "cpu",
                   progress: bool = False, head_factory: Callable[[int, int, int], nn.Module] | None = None):
    """Train fresh (audio encoder, visual encoder, head) on `train` with the recipe; return them.

    An encoder the head does not read is returned as None. `head_factory(audio_dim, visual_dim,
    num_classes)` replaces the head named in `cfg` (retrieval trains a contrastive head).
    """
    prep = dataset.preprocessing
    f_audio, f_visual = get_encoders(cfg.encoder, prep.audio_shape, prep.frame_shape,
                                     derive_seed(seed, "encoders", 0), device)
    make_head = head_factory or (lambda a, v, c: build_head(cfg, a, v, c))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "head", 0))
        head = make_head(f_audio.embed_dim, f_visual.embed_dim, dataset.num_classes).to(device)
    f_audio = f_audio if "audio" in head.modalities else None
    f_visual = f_visual if "visual" in head.modalities else None
    groups = [{"params": net.parameters(), "lr": lr}
              for net, lr in ((f_audio, cfg.lr_audio), (f_visual, cfg.lr_visual), (head, cfg.lr_head)) if net is not None]
    optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    milestones = milestone_steps(cfg) if cfg.steps else list(cfg.milestones)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)

    def loss(audio, frames, labels):
        return head.loss(head(f_audio(audio) if f_audio is not None else None,
                              f_visual(frames) if f_visual is not None else None), labels)

    train_epochs(loss, optimizer, train, dataset, epochs=cfg.epochs, batch_size=cfg.batch_size,
                 augment=DSA(cfg.augment), seed=seed, networks=[n for n in (f_audio, f_visual, head) if n is not None],
                 device=device, modalities=head.modalities, scheduler=scheduler, progress=progress, steps=cfg.steps)
    return f_audio, f_visual, head
