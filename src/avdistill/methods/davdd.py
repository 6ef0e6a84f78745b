"""DAVDD: Decoupled Audio-Visual Dataset Distillation (Li et al., arXiv 2511.17890), a reconstruction.

The paper released no code and only its abstract is public; what follows is our reading of it
(every open choice is an option, see docs/DAVDD.md). Before distilling, a *pretrained bank* of K
trained (audio, visual) encoder pairs and a *decoupler bank* (per entry and modality, heads that
split a feature into a common part c and a private part p, both L2-normalised) are trained on the
real training split and cached (:mod:`avdistill.methods.bank`). Every iteration:
  1. pick bank entry k from the seed (``derive_seed(seed, "bank_entry", iteration)``);
  2. the shared matching step with k's frozen encoders (:class:`MeanMatcher` with an encoder
     source): a real batch of every class, the synthetic set expanded by the IDM factor, one
     DSA draw shared by real/synthetic and both modalities; split every embedding with k's
     decouplers;
  3. update the EMA prototypes of entry k: per class and modality, P ← m·P + (1 − m)·μ(c_real)
     (initialised by the first batch that visits k; checkpointed, so a resume is exact);
  4. with μ(·) the per-class mean, R real and S synthetic, the loss is a weighted sum of
       private  = Σ_c ||μ(p_aR) − μ(p_aS)||² + ||μ(p_vR) − μ(p_vS)||²       per modality only
       cim      = Σ_c ||μ(c_vR) − μ(c_aS)||² + ||μ(c_aR) − μ(c_vS)||²       Common Intermodal Matching
       sample   = Σ_c mean_{i ∈ S_c} (1 − cos(c_aS_i, c_vS_i))              each synthetic pair agrees
       dist     = Σ_c ||P_a − μ(c_aS)||² + ||P_v − μ(c_vS)||²                to the EMA prototypes
     total = λ_private·private + λ_cim·cim + λ_sample·sample + λ_dist·dist;
  5. one SGD step on the synthetic spectrograms and frames.

Decisions. Common Intermodal Matching crosses the modalities literally: the synthetic audio's
common class mean is pulled to the *real visual* common mean and vice versa (AVDD's joint/gap
terms would reduce to a rescaled DM again, see avdd.py). The private parts appear only in
`private`; the cross-modal terms (`cim`, `sample`) read common parts only, and the common and
private heads share no parameter, so no cross-modal gradient reaches a private head or flows
through a private path (tests/test_davdd.py checks it). The distribution level matches the
class means (first moment) of synthetic common parts to the prototypes; the EMA smooths the
real target over iterations, augmentations and real batches. Prototypes are kept per bank entry,
because each entry has its own common space. A λ of 0 switches a term off: it is not computed,
not logged, and contributes nothing; ``--bank random`` and ``--decoupler none`` are the other
two ablation switches. Defaults follow AVDD's preset (herding init, IDM factor 2, 5000
iterations, 128 real pairs per class, momentum 0.5). The learning rate, 8 on both modalities,
is calibrated to AVDD's step: the terms compare unit vectors, and on AV-Digits at IPC 10 their
gradient w.r.t. the synthetic set is ~40x smaller than AVDD's at the start (0.4-1.1 vs 10-47 in
norm over the first iterations), so 40 x AVDD's 0.2 moves the set about as far per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from avdistill.config import nested, option, redefault
from avdistill.errors import ConfigError
from avdistill.methods.bank import Bank, BankConfig, BankEntry, entry_index, load_or_train_bank
from avdistill.methods.base import RunContext, register_method
from avdistill.methods.matching import (Embeddings, MatchingConfig, MeanMatcher, class_means, distill_matching,
                                        mean_matching_loss)
from avdistill.searchspace import log_uniform, one_of, uniform

TERMS = ("private", "cim", "sample", "dist")


@dataclass
class DAVDDConfig(MatchingConfig):
    iterations: int = redefault(MatchingConfig, "iterations", 5000, "AVDD's preset: 5000")
    real_per_class: int = redefault(MatchingConfig, "real_per_class", 128, "AVDD's preset: 128")
    lr_audio: float = redefault(MatchingConfig, "lr_audio", 8.0, "calibrated to AVDD's step size",
                                search=log_uniform(0.5, 50))
    lr_frames: float = redefault(MatchingConfig, "lr_frames", 8.0, "calibrated to AVDD's step size",
                                 search=log_uniform(0.5, 50))
    init: str = redefault(MatchingConfig, "init", "herding", "as AVDD", search=one_of("herding", "real"))
    factor: int = redefault(MatchingConfig, "factor", 2, "as AVDD")
    bank: BankConfig = nested(BankConfig)
    bank_dir: str = option("", "bank cache folder ('': $XDG_CACHE_HOME or ~/.cache, then avdistill/davdd-banks)")
    lam_private: float = option(1.0, "weight of per-modality private-part matching (0: off)", search=uniform(0, 3))
    lam_cim: float = option(1.0, "weight of Common Intermodal Matching (0: off)", search=uniform(0, 3))
    lam_sample: float = option(1.0, "weight of sample-level pair alignment of common parts (0: off)",
                               search=uniform(0, 3))
    lam_dist: float = option(1.0, "weight of distribution-level matching to EMA prototypes (0: off)",
                             search=uniform(0, 3))
    ema_momentum: float = option(0.9, "momentum m of the EMA prototypes: P <- m P + (1 - m) batch mean",
                                 minimum=0, below=1)


# AVDD's preset, and the CPU budget: DAVDD's validation accuracy on av-digits-hard is flat from 50 to 200
# iterations (benchmarks/budget.py, docs/TUNING.md); 100 lies on that plateau.
BUDGETS = {"paper": {"iterations": 5000, "real_per_class": 128}, "cpu": {"iterations": 100, "real_per_class": 64}}


def weights(cfg: DAVDDConfig) -> dict[str, float]:
    """The switched-on terms and their weights."""
    return {name: w for name in TERMS if (w := getattr(cfg, f"lam_{name}")) > 0}


def check_terms(cfg: DAVDDConfig) -> None:
    if not weights(cfg):
        raise ConfigError("every DAVDD term is switched off (--lam-private, --lam-cim, --lam-sample, --lam-dist "
                          "are all 0): nothing to optimise")


@dataclass
class DecoupledFeatures:
    """Common (c) and private (p) parts, unit length, of one step's real batch and expanded synthetic set."""

    real_common_audio: torch.Tensor
    real_common_visual: torch.Tensor
    real_private_audio: torch.Tensor
    real_private_visual: torch.Tensor
    real_labels: torch.Tensor
    syn_common_audio: torch.Tensor
    syn_common_visual: torch.Tensor
    syn_private_audio: torch.Tensor
    syn_private_visual: torch.Tensor
    syn_labels: torch.Tensor


def decouple(entry: BankEntry, e: Embeddings) -> DecoupledFeatures:
    with torch.no_grad():
        rca, rpa = entry.decoupler_audio(e.real_audio)
        rcv, rpv = entry.decoupler_visual(e.real_visual)
    sca, spa = entry.decoupler_audio(e.syn_audio)
    scv, spv = entry.decoupler_visual(e.syn_visual)
    return DecoupledFeatures(rca, rcv, rpa, rpv, e.real_labels, sca, scv, spa, spv, e.syn_labels)


def private_matching(d: DecoupledFeatures, C: int) -> torch.Tensor:
    return (mean_matching_loss(class_means(d.real_private_audio, d.real_labels, C),
                               class_means(d.syn_private_audio, d.syn_labels, C))
            + mean_matching_loss(class_means(d.real_private_visual, d.real_labels, C),
                                 class_means(d.syn_private_visual, d.syn_labels, C)))


def common_intermodal_matching(d: DecoupledFeatures, C: int) -> torch.Tensor:
    return (mean_matching_loss(class_means(d.real_common_visual, d.real_labels, C),
                               class_means(d.syn_common_audio, d.syn_labels, C))
            + mean_matching_loss(class_means(d.real_common_audio, d.real_labels, C),
                                 class_means(d.syn_common_visual, d.syn_labels, C)))


def sample_alignment(d: DecoupledFeatures, C: int) -> torch.Tensor:
    disagreement = 1 - F.cosine_similarity(d.syn_common_audio, d.syn_common_visual, dim=1)
    return class_means(disagreement[:, None], d.syn_labels, C).sum()


def distribution_alignment(d: DecoupledFeatures, prototypes_audio: torch.Tensor, prototypes_visual: torch.Tensor,
                           C: int) -> torch.Tensor:
    return (mean_matching_loss(prototypes_audio, class_means(d.syn_common_audio, d.syn_labels, C))
            + mean_matching_loss(prototypes_visual, class_means(d.syn_common_visual, d.syn_labels, C)))


def davdd_loss(d: DecoupledFeatures, prototypes: tuple[torch.Tensor, torch.Tensor], lam: dict[str, float],
               num_classes: int) -> dict[str, torch.Tensor]:
    """The switched-on terms (``lam``: name -> weight) and their weighted sum, for the log."""
    compute = {"private": lambda: private_matching(d, num_classes),
               "cim": lambda: common_intermodal_matching(d, num_classes),
               "sample": lambda: sample_alignment(d, num_classes),
               "dist": lambda: distribution_alignment(d, *prototypes, num_classes)}
    terms = {name: compute[name]() for name in lam}
    return {"total": sum(lam[name] * terms[name] for name in terms), **terms}


class Prototypes:
    """Per bank entry, class and modality, an EMA of the real common class means; its tensors are the loop's state."""

    def __init__(self, entries: int, num_classes: int, dim: int, momentum: float, device: str):
        self.momentum = momentum
        self.state = {"prototypes_audio": torch.zeros(entries, num_classes, dim, device=device),
                      "prototypes_visual": torch.zeros(entries, num_classes, dim, device=device),
                      "prototypes_seen": torch.zeros(entries, device=device)}

    @torch.no_grad()
    def update(self, k: int, d: DecoupledFeatures, C: int) -> tuple[torch.Tensor, torch.Tensor]:
        seen = bool(self.state["prototypes_seen"][k])
        for name, common in (("prototypes_audio", d.real_common_audio), ("prototypes_visual", d.real_common_visual)):
            batch = class_means(common, d.real_labels, C)
            bank = self.state[name]
            bank[k] = self.momentum * bank[k] + (1 - self.momentum) * batch if seen else batch
        self.state["prototypes_seen"][k] = 1.0
        return self.state["prototypes_audio"][k], self.state["prototypes_visual"][k]


def davdd_step(bank: Bank, prototypes: Prototypes, lam: dict[str, float], seed: int):
    """The per-iteration loss for :func:`distill_matching` (the matcher's encoders come from the same entry),
    over the matcher's classes: every term is a sum over classes and each prototype belongs to one class, so a
    process of a multi-process run keeps only its classes' prototypes (:mod:`avdistill.distributed`)."""
    def step(matcher: MeanMatcher, iteration: int, audio: torch.Tensor, frames: torch.Tensor) -> dict:
        k = entry_index(seed, iteration, len(bank))
        d = decouple(bank.entries[k], matcher.embed(iteration, audio, frames))
        current = prototypes.update(k, d, matcher.num_classes)
        return davdd_loss(d, current, lam, matcher.num_classes)
    return step


def prepare_bank(dataset, cfg: DAVDDConfig, device: str = "cpu", progress: bool = False) -> Bank:
    """The run's bank, trained on first use and cached (also lets a benchmark train it outside timed runs)."""
    return load_or_train_bank(dataset, cfg.bank, cfg.encoder, Path(cfg.bank_dir) if cfg.bank_dir else None, device,
                              progress)


@register_method("davdd", DAVDDConfig, "DAVDD (reconstruction): pretrained + decoupler banks, private matching, "
                                       "common intermodal matching, sample/distribution alignment",
                 kind="synthesis", by_class=True, budgets=BUDGETS, validate=check_terms)
def distill_davdd(dataset, ipc: int, cfg: DAVDDConfig, run: RunContext):
    bank = prepare_bank(dataset, cfg, run.device, run.progress)
    lam = weights(cfg)
    classes = run.group.classes(dataset.num_classes)
    prototypes = Prototypes(len(bank), len(classes), bank.entries[0].decoupler_audio.common_dim, cfg.ema_momentum,
                            run.device)
    step = davdd_step(bank, prototypes, lam, run.seed)
    encoders = lambda iteration: bank.entries[entry_index(run.seed, iteration, len(bank))].encoders  # noqa: E731
    return distill_matching(dataset, ipc, cfg, run, step, "davdd", encoders=encoders, state=prototypes.state)

