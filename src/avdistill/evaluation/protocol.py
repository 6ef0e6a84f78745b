"""The AVDD evaluation protocol: train fresh networks on a (synthetic or real) training set,
report final-epoch top-1 accuracy on a real split (test by default; val to make choices).

Per run: fresh encoders and head (seeded), Adam (lr 1e-3 audio encoder and head, 1e-4 visual
encoder, weight decay 1e-4), 30 epochs, batch 32, lr x0.1 after epochs 10 and 20, DSA applied
to each modality independently with per-sample parameters. N runs -> mean ± std.

Fixed epochs give a larger set more optimiser steps: a set expanded 4x by the factor trains
4x as long. ``steps`` (> 0) separates the data from the training: exactly that many optimiser
steps whatever the set's size (epochs over seeded shuffles, the last one cut short), with the
milestones kept at the same fractions of training, i.e. at step ``round(m * steps / epochs)``
for each milestone epoch m (the AVDD protocol: steps/3 and 2*steps/3).

The head decides which encoders take part (``head.modalities``): an audio-only or visual-only
head never runs the other encoder, and that encoder is neither optimised nor returned.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from avdistill.augment import DEFAULT_STRATEGY, DSA
from avdistill.data.dataset import AVDataset, AVSplit
from avdistill.errors import ConfigError
from avdistill.methods.base import option
from avdistill.models import PRESETS, get_encoders
from avdistill.models.heads import HEADS
from avdistill.seeding import derive_seed, generator


EVAL_SPLITS = ("val", "test")


@dataclass
class EvalConfig:
    epochs: int = option(30, "training epochs per run (AVDD: 30)", minimum=1)
    batch_size: int = option(32, "training batch size (AVDD: 32)", minimum=1)
    lr_audio: float = option(1e-3, "Adam lr of the audio encoder (AVDD: 1e-3)", above=0)
    lr_visual: float = option(1e-4, "Adam lr of the visual encoder (AVDD: 1e-4)", above=0)
    lr_head: float = option(1e-3, "Adam lr of the fusion head (AVDD: 1e-3)", above=0)
    weight_decay: float = option(1e-4, "Adam weight decay (AVDD: 1e-4)")
    milestones: tuple[int, ...] = option((10, 20), "epochs after which the lr is multiplied by 0.1")
    encoder: str = option("small", "encoder preset of the evaluation networks", choices=tuple(PRESETS))
    head: str = option("ensemble", "fusion head: a, v, concat, sum, attention or ensemble", choices=tuple(HEADS))
    fusion_dim: int = option(0, "sum/attention heads: size of the common space (0: the smaller embedding)")
    attention_hidden: int = option(128, "attention head: hidden units of the score MLP (0: a linear score)")
    augment: str = option(DEFAULT_STRATEGY, "DSA ops applied during training, or 'none'", check=DSA)
    test_batch: int = option(512, "batch size when scoring the test split", minimum=1)
    steps: int = option(0, "fixed-steps protocol: this many optimiser steps whatever the set's size, milestones "
                           "scaled to the same fractions of training (0: the AVDD protocol's fixed epochs)", minimum=0)
    on: str = option("test", "real split the accuracy is measured on: 'val' to make choices, 'test' for final "
                             "numbers", choices=EVAL_SPLITS)


@dataclass
class EvalResult:
    accuracies: list[float]
    config: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f} (n={len(self.accuracies)})"


def check_eval_config(cfg: EvalConfig) -> None:
    if cfg.head not in HEADS:
        raise ConfigError(f"unknown head {cfg.head!r}; choose from {', '.join(HEADS)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")
    if cfg.steps < 0:
        raise ConfigError(f"steps must be >= 0 (0: fixed epochs), got {cfg.steps}")
    if cfg.on not in EVAL_SPLITS:
        raise ConfigError(f"--on must be one of {', '.join(EVAL_SPLITS)}, got {cfg.on!r}")


def milestone_steps(cfg: EvalConfig) -> list[int]:
    """The fixed-steps protocol's lr milestones: the epoch milestones at the same fractions of `cfg.steps`."""
    return [round(m * cfg.steps / cfg.epochs) for m in cfg.milestones]


def build_head(cfg: EvalConfig, audio_dim: int, visual_dim: int, num_classes: int) -> nn.Module:
    return HEADS[cfg.head](audio_dim, visual_dim, num_classes, fusion_dim=cfg.fusion_dim,
                           attention_hidden=cfg.attention_hidden)


def train_networks(train: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | AVSplit, dataset: AVDataset,
                   cfg: EvalConfig, seed: int, device: str = "cpu", progress: bool = False,
                   head_factory: Callable[[int, int, int], nn.Module] | None = None):
    """Train fresh (audio encoder, visual encoder, head) on `train` with the protocol; return them.

    `train` is either model-space tensors (a synthetic set) or a real AVSplit, normalised batch by
    batch. An encoder the head does not read is returned as None. `head_factory(audio_dim,
    visual_dim, num_classes)` replaces the head named in `cfg` (retrieval trains a contrastive head).
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
    by_steps = cfg.steps > 0
    milestones = milestone_steps(cfg) if by_steps else list(cfg.milestones)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    augment = DSA(cfg.augment)
    batch, n = _batcher(train, dataset, device)
    shuffle = generator(seed, "shuffle")
    networks = [net for net in (f_audio, f_visual, head) if net is not None]
    epochs = math.ceil(cfg.steps / math.ceil(n / cfg.batch_size)) if by_steps else cfg.epochs
    step = 0
    for _ in tqdm(range(epochs), desc="train", leave=False, disable=not progress):
        for net in networks:
            net.train()
        for idx in torch.randperm(n, generator=shuffle).split(cfg.batch_size):
            if by_steps and step == cfg.steps:
                break
            audio, frames, labels = batch(idx)
            e_audio = e_visual = None
            if f_audio is not None:
                e_audio = f_audio(augment(audio, derive_seed(seed, "augment", step, 0), siamese=False))
            if f_visual is not None:
                e_visual = f_visual(augment(frames, derive_seed(seed, "augment", step, 1), siamese=False))
            loss = head.loss(head(e_audio, e_visual), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if by_steps:
                scheduler.step()
        if not by_steps:
            scheduler.step()
    return f_audio, f_visual, head


def train_and_test(train, dataset: AVDataset, cfg: EvalConfig, seed: int, device: str = "cpu",
                   progress: bool = False) -> float:
    """One run: train fresh networks on `train`, return top-1 accuracy on the real split `cfg.on`."""
    f_audio, f_visual, head = train_networks(train, dataset, cfg, seed, device, progress)
    return test_accuracy(f_audio, f_visual, head, dataset, cfg.test_batch, device, cfg.on)


@torch.no_grad()
def test_accuracy(f_audio, f_visual, head, dataset: AVDataset, batch_size: int, device: str = "cpu",
                  on: str = "test") -> float:
    """Top-1 accuracy on the real split `on` ("test" or "val"); an encoder given as None is not run."""
    networks = [net for net in (f_audio, f_visual, head) if net is not None]
    for net in networks:
        net.eval()
    split = dataset.split(on)
    batch, _ = _batcher(split, dataset, device)
    correct = 0
    for idx in torch.arange(len(split)).split(batch_size):
        audio, frames, labels = batch(idx)
        outputs = head(f_audio(audio) if f_audio is not None else None,
                       f_visual(frames) if f_visual is not None else None)
        correct += int((head.predict(outputs).argmax(1) == labels).sum())
    return correct / len(split)


def _batcher(data, dataset: AVDataset, device: str):
    """(idx -> (audio, frames, labels) in model space on `device`, number of samples)."""
    if isinstance(data, AVSplit):
        return (lambda idx: tuple(t.to(device) for t in dataset.model_inputs(data.subset(idx)))), len(data)
    audio, frames, labels = data
    return (lambda idx: (audio[idx].to(device), frames[idx].to(device), labels[idx].to(device))), len(labels)


def evaluate_runs(train, dataset: AVDataset, cfg: EvalConfig | None = None, runs: int = 3, seed: int = 0,
                  device: str = "cpu", progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """`runs` independent trainings (seeds derived from `seed`) -> accuracies, mean ± std."""
    cfg = cfg or EvalConfig()
    check_eval_config(cfg)
    dataset.split(cfg.on)  # a missing validation split fails before any training
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, got {runs}")
    accuracies = [train_and_test(train, dataset, cfg, seed=derive_seed(seed, "encoders", 10_000 + r), device=device)
                  for r in tqdm(range(runs), desc=desc, disable=not progress, dynamic_ncols=True)]
    return EvalResult(accuracies, {"runs": runs, "seed": seed, **dataclasses.asdict(cfg)})
