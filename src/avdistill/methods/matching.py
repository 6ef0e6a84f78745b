"""Pieces shared by the distribution-matching family (DM, AVDD, DAVDD): the shared options,
the real batch sampler, and one matching step that every member builds its loss from.

A matching step (:class:`MeanMatcher`): draw fresh, randomly initialised, frozen audio and
visual encoders (or take them from another source: DAVDD's pretrained bank); draw a batch of
real pairs of every class; expand the synthetic set with the IDM factor technique (before
augmentation); augment real and synthetic with the *same* DSA draw (one seed per iteration,
shared by real/synthetic and both modalities, as in AVDD); return the per-class mean
embeddings of all four (or the per-sample embeddings, :meth:`MeanMatcher.embed`). Methods differ
only in the loss they build from those, then share the initialisation and the optimisation loop
(:func:`distill_class_means` for losses of the class means alone, :func:`distill_matching` for
losses that read the per-sample embeddings or bring their own encoders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from avdistill.augment import DSA
from avdistill.config import option
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.factor import expand, expand_labels
from avdistill.files import user_cache_dir
from avdistill.methods.base import RunContext
from avdistill.methods.loop import optimise_synthetic
from avdistill.methods.real_means import (CPU_CHUNK, PRECISIONS, RealMeans, RealSampler, autocast, check_chunk,
                                          class_means, encode)
from avdistill.methods.synthesis import SynthesisConfig, starting_set
from avdistill.models import uses_batch_statistics
from avdistill.seeding import derive_seed, generator


UPDATES = ("per-iteration", "per-class")


@dataclass
class MatchingConfig(SynthesisConfig):
    """Options every distribution-matching method has; defaults are DM's for AV-Digits on a CPU."""

    real_per_class: int = option(64, "real pairs per class embedded at every iteration", "DM paper: 256", minimum=1)
    chunk: int = option(0, "samples per encoder call; the result is the same, only the speed changes (0: automatic, "
                           f"{CPU_CHUNK} on a CPU, where small slices stay in cache, the whole batch on a GPU)",
                        minimum=0, check=check_chunk)

@dataclass
class MeanMatchingConfig(MatchingConfig):
    """Options of the methods whose loss reads only class means under random encoders (DM, AVDD):
    their real side can be computed once per draw and reused (:mod:`avdistill.methods.real_means`)."""

    draws: int = option(0, "distinct random (encoder, augmentation, real batch) draws, cycled; each draw's real "
                           "class means are computed once (0: a fresh draw every iteration, as DM and AVDD)",
                        minimum=0)
    real_cache: str = option("", "folder caching the real class means of each draw, shared across IPC, methods "
                                 "and reruns ('': the user cache; 'off': no cache)")
    precision: str = option("fp32", "encoder passes in 'fp32' or 'bf16' autocast (mixed precision: class means, "
                                    "loss and the synthetic set stay float32; meant for GPUs)",
                            choices=PRECISIONS)
    update: str = option("per-iteration", "'per-iteration': one SGD step on the loss summed over the classes (DM); "
                                           "'per-class': one step per class on the shared tensors and momentum "
                                           "buffer, as AVDD's code (docs/METHODS.md, 'Update order')",
                         choices=UPDATES)


def mean_matching_loss(real_means: torch.Tensor, syn_means: torch.Tensor) -> torch.Tensor:
    """DM's loss: sum over classes of the squared distance between real and synthetic mean embeddings."""
    return (real_means - syn_means).pow(2).sum()


@dataclass
class Embeddings:
    """Per-sample embeddings of one matching step: the real batch (no gradient) and the expanded synthetic set."""

    real_audio: torch.Tensor
    real_visual: torch.Tensor
    real_labels: torch.Tensor
    syn_audio: torch.Tensor
    syn_visual: torch.Tensor
    syn_labels: torch.Tensor


@dataclass
class ClassEmbeddings:
    """One class's per-sample embeddings in a matching step: its real batch (no gradient) and its synthetic samples."""

    real_audio: torch.Tensor
    real_visual: torch.Tensor
    syn_audio: torch.Tensor
    syn_visual: torch.Tensor


EncoderSource = Callable[[int], tuple[torch.nn.Module, torch.nn.Module]]


@dataclass
class ClassMeans:
    """[num_classes, D] mean embeddings of one matching step; the real ones carry no gradient."""

    real_audio: torch.Tensor
    real_visual: torch.Tensor
    syn_audio: torch.Tensor
    syn_visual: torch.Tensor


class MeanMatcher:
    """One matching step of the DM family (see the module docstring); a pure function of (seed, iteration).

    With random encoders (DM, AVDD: `cfg` a :class:`MeanMatchingConfig`) the real class means come
    from :class:`RealMeans`, computed once per draw; with encoders from elsewhere (DAVDD's
    bank) both halves are embedded at every step (:meth:`embed`).
    """

    def __init__(self, dataset: AVDataset, cfg: MatchingConfig, labels: torch.Tensor, run: RunContext,
                 encoders: EncoderSource | None = None, classes: list[int] | None = None):
        """`encoders(iteration) -> (f_audio, f_visual)`, frozen; default: random ones, one per draw (DM).
        `classes`: the subset matched (default: all), labelled 0..len-1 in `labels` and in the means."""
        self.num_classes = dataset.num_classes if classes is None else len(classes)
        self.factor = cfg.factor
        self.stored_labels = labels.to(run.device)
        self.labels = expand_labels(labels, cfg.factor).to(run.device)
        self.sampler = RealSampler(dataset, cfg.real_per_class, run.device, classes)
        self.augment = DSA(cfg.augment)
        self.seed = run.seed
        self.chunk = cfg.chunk
        self.stats = None
        if encoders is None:
            cache = {"": user_cache_dir("real-stats"), "off": None}.get(cfg.real_cache, Path(cfg.real_cache))
            self.stats = RealMeans(dataset, self.sampler, cfg.encoder, self.augment, run.seed, cfg.draws,
                                        run.device, cache, run.progress, cfg.precision, cfg.chunk)
            self.draws_used = min(cfg.iterations, cfg.draws or cfg.iterations)
            encoders = self.stats.encoders
        self.encoders = encoders
        self._latest: tuple[int, tuple, tuple] | None = None  # (iteration, its encoders, its real embeddings)

    def _step(self, iteration: int) -> tuple[tuple[torch.nn.Module, torch.nn.Module], tuple[torch.Tensor, ...]]:
        """The step's encoders and (audio, visual, labels) of its real batch under them and its DSA draw: made once
        per step, shared by the class groups that embed their synthetic samples one after another."""
        if self._latest is None or self._latest[0] != iteration:
            f_audio, f_visual = self.encoders(iteration)
            real_audio, real_frames, real_labels = self.sampler.sample(self.seed, iteration)
            aug_seed = derive_seed(self.seed, "augment", iteration)
            with torch.no_grad():
                real_a = encode(f_audio, self.augment, real_audio, aug_seed, self.chunk)
                real_v = encode(f_visual, self.augment, real_frames, aug_seed, self.chunk)
            self._latest = (iteration, (f_audio, f_visual), (real_a, real_v, real_labels))
        return self._latest[1], self._latest[2]

    def embed(self, iteration: int, syn_audio: torch.Tensor, syn_frames: torch.Tensor) -> Embeddings:
        """Per-sample embeddings of a real batch and the synthetic set under one shared DSA draw."""
        (f_audio, f_visual), (real_a, real_v, real_labels) = self._step(iteration)
        aug_seed = derive_seed(self.seed, "augment", iteration)
        syn_a = encode(f_audio, self.augment, expand(syn_audio, self.factor), aug_seed, self.chunk)
        syn_v = encode(f_visual, self.augment, expand(syn_frames, self.factor), aug_seed, self.chunk)
        return Embeddings(real_a, real_v, real_labels, syn_a, syn_v, self.labels)

    def embed_classes(self, iteration: int, syn_audio: torch.Tensor, syn_frames: torch.Tensor, classes: list[int],
                      keep: int = 0) -> list[ClassEmbeddings]:
        """:meth:`embed` for `classes` alone: the same real rows, and only these classes' synthetic samples go through
        the encoders (so a caller can backward class group by class group). `keep` > 0: each class's synthetic side is
        a seeded random `keep` of its expanded samples, drawn afresh every step (all of them where it has no more)."""
        (f_audio, f_visual), (real_a, real_v, real_labels) = self._step(iteration)
        aug_seed = derive_seed(self.seed, "augment", iteration)
        audio, frames = [], []
        for c in classes:
            rows = torch.nonzero(self.stored_labels == c).flatten()
            expanded = len(rows) * self.factor ** 2
            pick = slice(None)
            if 0 < keep < expanded:  # seeded by the class's global index: a class split draws the same subset
                pick = matched_subset(expanded, keep, self.seed, iteration, self.sampler.classes[c]).to(rows.device)
            audio.append(expand(syn_audio[rows], self.factor)[pick])
            frames.append(expand(syn_frames[rows], self.factor)[pick])
        counts = [len(a) for a in audio]
        syn_a = encode(f_audio, self.augment, torch.cat(audio), aug_seed, self.chunk).split(counts)
        syn_v = encode(f_visual, self.augment, torch.cat(frames), aug_seed, self.chunk).split(counts)
        return [ClassEmbeddings(real_a[real_labels == c], real_v[real_labels == c], a, v)
                for c, a, v in zip(classes, syn_a, syn_v)]

    def __call__(self, iteration: int, syn_audio: torch.Tensor, syn_frames: torch.Tensor,
                 part: int | None = None) -> ClassMeans:
        """The class means of every class, or (`part`, a class) of that class alone ([1, D]): its synthetic
        rows alone go through the encoders, under the same encoders and DSA draw as the whole set."""
        if part is not None:
            return self._one_class(iteration, syn_audio, syn_frames, part)
        C = self.num_classes
        if self.stats is None:
            e = self.embed(iteration, syn_audio, syn_frames)
            return ClassMeans(class_means(e.real_audio, e.real_labels, C), class_means(e.real_visual, e.real_labels, C),
                              class_means(e.syn_audio, e.syn_labels, C), class_means(e.syn_visual, e.syn_labels, C))
        draw = self.stats.draw(iteration)
        real_audio, real_visual = self.stats.means(draw, self.draws_used)
        f_audio, f_visual = self.stats.encoders(draw)
        seed = self.stats.augment_seed(draw)
        with autocast(self.stats.device, self.stats.precision):
            syn_a = encode(f_audio, self.augment, expand(syn_audio, self.factor), seed, self.chunk).float()
            syn_v = encode(f_visual, self.augment, expand(syn_frames, self.factor), seed, self.chunk).float()
        return ClassMeans(real_audio, real_visual, class_means(syn_a, self.labels, C), class_means(syn_v, self.labels, C))

    def _one_class(self, iteration: int, syn_audio: torch.Tensor, syn_frames: torch.Tensor, c: int) -> ClassMeans:
        draw = self.stats.draw(iteration)
        real_audio, real_visual = self.stats.means(draw, self.draws_used)
        f_audio, f_visual = self.stats.encoders(draw)
        seed = self.stats.augment_seed(draw)
        rows = torch.nonzero(self.stored_labels == c).flatten()
        with autocast(self.stats.device, self.stats.precision):
            syn_a = encode(f_audio, self.augment, expand(syn_audio[rows], self.factor), seed, self.chunk).float()
            syn_v = encode(f_visual, self.augment, expand(syn_frames[rows], self.factor), seed, self.chunk).float()
        return ClassMeans(real_audio[c:c + 1], real_visual[c:c + 1], syn_a.mean(0, keepdim=True),
                          syn_v.mean(0, keepdim=True))


def matched_subset(expanded: int, keep: int, seed: int, iteration: int, cls: int) -> torch.Tensor:
    """Sorted indices of `keep` of a class's `expanded` synthetic samples: a pure function of (seed, step, class)."""
    return torch.randperm(expanded, generator=generator(seed, "matched_subset", iteration, cls))[:keep].sort().values


def distill_class_means(dataset: AVDataset, ipc: int, cfg: MeanMatchingConfig, run: RunContext,
                        loss: Callable[[ClassMeans], dict[str, torch.Tensor]], name: str):
    """Initialise, then minimise ``loss(means)["total"]`` with the shared loop; return the synthetic tensors.

    ``--update per-class`` steps once per class on that class's loss (``loss`` of its [1, D] means)."""
    if cfg.update == "per-class":
        if run.group.world_size > 1:
            raise ConfigError("--update per-class steps through the classes one after another on one momentum "
                              "buffer, which a class split cannot share; run one process or --update per-iteration")
        return distill_matching(dataset, ipc, cfg, run, lambda matcher, it, a, f, c: loss(matcher(it, a, f, c)), name,
                                parts=dataset.num_classes)
    return distill_matching(dataset, ipc, cfg, run, lambda matcher, it, a, f: loss(matcher(it, a, f)), name)


MatchingStep = Callable[[MeanMatcher, int, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def distill_matching(dataset: AVDataset, ipc: int, cfg: MatchingConfig, run: RunContext, step: MatchingStep,
                     name: str, encoders: EncoderSource | None = None,
                     state: dict[str, torch.Tensor] | None = None, parts: int = 1, accumulate: bool = False):
    """:func:`distill_class_means` for methods that need more than class means: ``step(matcher, iteration, audio,
    frames)`` returns the loss terms; `encoders` replaces the random ones and `state` is checkpointed.
    `parts` > 1: ``step(matcher, iteration, audio, frames, part)``, one optimiser step per part, or with `accumulate`
    one step per iteration on the parts' summed gradients (the loop's docstring).

    In a multi-process run each process optimises its classes' rows only (the loss is a sum over
    classes, see :mod:`avdistill.distributed`) and the rows are gathered into the whole set.
    """
    group = run.group
    if encoders is None and group.world_size > 1 and uses_batch_statistics(cfg.encoder):
        raise ConfigError(f"encoder {cfg.encoder!r} normalises over the batch, which mixes the classes, so it cannot "
                          "be split across processes; choose another --encoder or run one process")
    audio, frames, labels = starting_set(dataset, ipc, cfg, run.seed, run.progress)
    classes = group.classes(dataset.num_classes)
    mine = torch.isin(labels, torch.tensor(classes))
    local_labels = torch.searchsorted(torch.tensor(classes), labels[mine])
    matcher = MeanMatcher(dataset, cfg, local_labels, run, encoders, classes)
    audio, frames = optimise_synthetic(
        audio[mine].to(run.device), frames[mine].to(run.device), lambda it, a, f, *part: step(matcher, it, a, f, *part),
        iterations=cfg.iterations, lr_audio=cfg.lr_audio, lr_frames=cfg.lr_frames, momentum=cfg.momentum,
        fingerprint=run.fingerprint, folder=run.folder, checkpoint_every=cfg.checkpoint_every,
        progress=run.progress, desc=f"{name} ipc={ipc}", state=state, parts=parts, accumulate=accumulate,
        group=group, watch=run.watch)
    C = dataset.num_classes
    return group.gather_classes(audio, C).cpu(), group.gather_classes(frames, C).cpu(), labels
