"""AV-MMD: match the joint audio-visual distribution of each class, not only its modality means.

DM and AVDD compare first moments: per class, the mean audio and the mean visual embedding under
random encoders (AVDD's joint and gap terms at equal weights are 21 x DM, see avdd.py). Nothing in
them sees which sound goes with which frame, nor how the samples of a class spread. AV-MMD adds the
squared maximum mean discrepancy (M3D, Zhang et al., AAAI'24) between the real and the synthetic
*pairs* of a class, with a kernel on the joint embedding z = (f_a(a), f_v(v)) of a pair.

Every iteration (the shared matching step, :meth:`avdistill.methods.matching.MeanMatcher.embed`):
  1. draw fresh, randomly initialised, frozen audio and visual encoders (the same draw as DM/AVDD);
  2. embed a real batch of every class and the synthetic set, expanded by the IDM factor before
     augmentation, under one DSA draw shared by real/synthetic and both modalities;
  3. per class c, with R the real and S the synthetic pairs of c:
       mean = ||μ_a(R) − μ_a(S)||² + ||μ_v(R) − μ_v(S)||²                 (DM: the linear kernel)
       mmd  = E k(R, R') + E k(S, S') − 2 E k(R, S)                       (biased MMD², all pairs)
              k(z, z') = mean_s exp(−(||a − a'||² / σ_a² + ||v − v'||² / σ_v²) / s)   ('joint')
       cov  = ||Cov_R(a/σ_a, v/σ_v) − Cov_S(a/σ_a, v/σ_v)||²_F           (audio x visual, optional)
     σ_m² = the median squared distance between the class's real embeddings of modality m (no
     gradient), s over the bandwidth scales (default 0.5, 1, 2);
  4. loss = Σ_c λ_mean·mean + λ_mmd·mmd + λ_cov·cov; one SGD step on the synthetic spectrograms
     and frames.

Cost. The loss is a sum over classes, so the synthetic side goes through the encoders a few classes
at a time (``--syn-batch`` samples per backward pass) and the gradients are summed before the one
step: the same step (bit for bit on a CPU where every pass holds two samples or more), with only one
group's graph in memory. Each class matches a fresh seeded random subset of ``--matched-per-class``
(40) of its expanded samples per iteration where it has more (its mean and real-synthetic kernel
terms estimated without bias). With factor 2 that is all of IPC 10's, so an iteration at IPC 20 costs
one at IPC 10, not twice that: the issue's time bound (1.5 x AVDD's, which shrinks to factor 1 and
matches 20 per class there) allows no more; on validation, matching all 80 was within noise of 40 (docs/AVMMD.md).

Why a *product* kernel: exp(−d_a − d_v) = k_a · k_v is characteristic for the joint distribution of
(audio, frame), so its MMD is zero only when the synthetic pairs are distributed like the real pairs,
pairing included; the sum kernel (k_a + k_v)/2 (``--kernel marginal``, an ablation row) sees each
modality's distribution alone. Both add, over DM, the spread of a class: the E k(S, S') term pushes
synthetic samples of a class apart where real samples are spread, which mean matching never asks for.

Packing (the IDM factor, :mod:`avdistill.factor`). ``--factor 0`` (the default) picks the factor per
IPC: 1 below ``--factor-from-ipc`` (10), where four half-size cells lose to one sharp sample, else 2.
Where a class has fewer than IPC x 4 real pairs to pack (IPC 20 on 66 pairs per class), AVDD's rule
shrinks the factor to 1; AV-MMD keeps 2 and repeats the class's pairs in the init's order
(``--pack repeat``, the default; ``--pack shrink`` is AVDD's rule). The repeated copies start equal;
the MMD's E k(S, S') term is what pushes them apart (on validation at IPC 20: mean matching alone
68.8, with the MMD 73.1; docs/AVMMD.md).

Decisions. The bandwidth is per class and modality, from the real batch alone, so the loss is a
sum over classes each touching only its class's synthetic rows: the torchrun class split is exact
(:mod:`avdistill.distributed`). The mean term keeps DM's raw scale, so λ_mean = 1 at AVDD's
effective step (lr 0.2 x 21 = 4.2) moves the set as AVDD does; MMD² lies in [0, 2] per class and
its weight (1000) was chosen on the validation split of av-digits-hard (docs/AVMMD.md), as were the
joint kernel over the marginal one (a tie) and random encoders over DAVDD's trained bank
(``--encoders bank``, no gain with the MMD). Because MMD needs every real sample, not only class
means, the real side is embedded at every iteration (no real-statistics cache), like DM/AVDD with
``--real-cache off``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from avdistill.config import option, redefault
from avdistill.errors import ConfigError
from avdistill.factor import MAX_FACTOR
from avdistill.methods.bank import BankConfig, entry_index, load_or_train_bank
from avdistill.methods.base import RunContext, register_method
from avdistill.methods.matching import ClassEmbeddings, MatchingConfig, MeanMatcher, distill_matching
from avdistill.methods.real_means import random_encoders
from avdistill.methods.synthesis import fitting_factor

KERNELS = ("joint", "marginal")
ENCODERS = ("random", "bank")
# --encoders bank: DAVDD's pretrained bank without decouplers (AV-MMD matches the encoders' features
# themselves), at DAVDD's default size and stopping epochs; the same cached bank as DAVDD's "no decoupling".
BANK = BankConfig(decoupler="none")
TERMS = ("mean", "mmd", "cov")


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.5,1,2' -> (0.5, 1.0, 2.0); a ConfigError naming the option otherwise."""
    try:
        scales = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        scales = ()
    if not scales or not all(0 < s < float("inf") for s in scales):
        raise ConfigError(f"--bandwidths must be comma-separated positive numbers, got {text!r}")
    return scales


@dataclass
class AVMMDConfig(MatchingConfig):
    iterations: int = redefault(MatchingConfig, "iterations", 5000, "AVDD's preset: 5000")
    real_per_class: int = option(128, "real pairs per class embedded at every iteration (at least 2: the bandwidth "
                                      "is a median distance between them)", "AVDD's preset: 128", minimum=2)
    lr_audio: float = redefault(MatchingConfig, "lr_audio", 4.2, "AVDD's effective step: 0.2 x 21")
    lr_frames: float = redefault(MatchingConfig, "lr_frames", 4.2, "AVDD's effective step: 0.2 x 21")
    init: str = redefault(MatchingConfig, "init", "herding", "as AVDD")
    factor: int = option(0, "IDM factor: each stored sample holds factor x factor downscaled samples "
                            "(0: automatic, 1 below --factor-from-ipc, else 2, packed as --pack says)",
                       minimum=0, maximum=MAX_FACTOR)
    factor_from_ipc: int = option(10, "with --factor 0: the smallest IPC that gets factor 2", minimum=1)
    pack: str = redefault(MatchingConfig, "pack", "repeat", "AVDD shrinks the factor (shrink); chosen on "
                                                           "av-digits-hard validation at IPC 20")
    kernel: str = option("joint", "MMD kernel: 'joint' (product of audio and visual Gaussians: sees the pairing) "
                                  "or 'marginal' (their mean: each modality alone)", choices=KERNELS)
    bandwidths: str = option("0.5,1,2", "Gaussian kernel scales s, relative to the median squared distance",
                             check=parse_scales)
    lam_mean: float = option(1.0, "weight of per-modality mean matching (DM, the linear kernel; 0: off)")
    lam_mmd: float = option(1000.0, "weight of the per-class MMD² of joint embeddings (0: off)",
                            "chosen on av-digits-hard validation among 0, 100, 1000")
    lam_cov: float = option(0.0, "weight of audio x visual cross-covariance matching (0: off)")
    encoders: str = option("random", "embedding networks: 'random' (fresh random encoders every iteration, as DM "
                                     "and AVDD) or 'bank' (a trained encoder pair of DAVDD's pretrained bank per "
                                     "iteration)", choices=ENCODERS)
    bank_dir: str = option("", "with --encoders bank: bank cache folder ('': $XDG_CACHE_HOME or ~/.cache, then "
                               "avdistill/davdd-banks)")
    matched_per_class: int = option(40, "expanded synthetic samples of each class matched per iteration, a fresh "
                                        "seeded random subset where the class has more (0: all of them)",
                                    "chosen for the cost at IPC 20, checked on av-digits-hard validation", minimum=0)
    syn_batch: int = option(256, "synthetic samples per backward pass, whole classes (at least one) at a time: bounds "
                                 "the memory; the step is the same, its gradient summed over the passes "
                                 "(0: all classes in one pass)", minimum=0)

    def factor_for(self, ipc: int, dataset) -> int:
        """The IDM factor of a run at `ipc`: --factor, or with 0 the automatic choice: 2 from --factor-from-ipc
        on (with --pack shrink: only if every class has the 4 x IPC training pairs to pack, else 1), else 1."""
        if self.factor:
            return super().factor_for(ipc, dataset)
        if ipc < self.factor_from_ipc:
            return 1
        return fitting_factor(2, ipc, dataset) if self.pack == "shrink" else 2


# Declared ablation rows (`avdistill bench --ablations avmmd`): option overrides of the defaults.
ABLATIONS = {
    "mean only (DM at AVDD's step)": {"lam_mmd": 0.0},
    "+ marginal MMD": {"kernel": "marginal"},
    "+ joint MMD (AV-MMD)": {},
    "+ joint MMD + cross-covariance": {"lam_cov": 100.0},
    "joint MMD only": {"lam_mean": 0.0},
    "λ_mmd 100": {"lam_mmd": 100.0},
    "shrink the factor where a class cannot pack (AVDD's rule)": {"pack": "shrink"},
    "factor 2 at every IPC": {"factor": 2},
    "factor 1 at every IPC": {"factor": 1},
    "trained bank encoders": {"encoders": "bank"},
    "random init": {"init": "real"},
    "match every expanded sample": {"matched_per_class": 0},
}


def weights(cfg: AVMMDConfig) -> dict[str, float]:
    """The switched-on terms and their weights."""
    return {name: w for name in TERMS if (w := getattr(cfg, f"lam_{name}")) > 0}


def check_terms(cfg: AVMMDConfig) -> None:
    if not weights(cfg):
        raise ConfigError("every AV-MMD term is switched off (--lam-mean, --lam-mmd, --lam-cov are all 0): "
                          "nothing to optimise")


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[n, m] ||x_i − y_j||² by the Gram identity (no [n, m, D] intermediate), never below 0."""
    return (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.T).clamp_min(0)


def median_bandwidth(x: torch.Tensor) -> torch.Tensor:
    """Median squared distance between distinct rows of `x` (the median heuristic), without gradient."""
    with torch.no_grad():
        i, j = torch.triu_indices(len(x), len(x), 1, device=x.device)
        return squared_distances(x, x)[i, j].median().clamp_min(1e-12)


@dataclass
class ClassPairs(ClassEmbeddings):
    """One class's real (R) and synthetic (S) audio and visual embeddings, with its bandwidths."""

    def __post_init__(self):
        self.sigma_audio = median_bandwidth(self.real_audio)
        self.sigma_visual = median_bandwidth(self.real_visual)


def kernel_matrix(p: ClassPairs, audio_x, visual_x, audio_y, visual_y, kernel: str,
                  scales: tuple[float, ...]) -> torch.Tensor:
    """[n, m] kernel between pairs (audio_x_i, visual_x_i) and (audio_y_j, visual_y_j)."""
    da = squared_distances(audio_x, audio_y) / p.sigma_audio
    dv = squared_distances(visual_x, visual_y) / p.sigma_visual
    if kernel == "joint":
        return sum(torch.exp(-(da + dv) / s) for s in scales) / len(scales)
    return sum(torch.exp(-da / s) + torch.exp(-dv / s) for s in scales) / (2 * len(scales))


def class_mmd(p: ClassPairs, kernel: str, scales: tuple[float, ...]) -> torch.Tensor:
    """Biased MMD² between the class's real and synthetic pairs."""
    rr = kernel_matrix(p, p.real_audio, p.real_visual, p.real_audio, p.real_visual, kernel, scales).mean()
    ss = kernel_matrix(p, p.syn_audio, p.syn_visual, p.syn_audio, p.syn_visual, kernel, scales).mean()
    rs = kernel_matrix(p, p.real_audio, p.real_visual, p.syn_audio, p.syn_visual, kernel, scales).mean()
    return rr + ss - 2 * rs


def class_cross_covariance(p: ClassPairs) -> torch.Tensor:
    """||Cov_R(a, v) − Cov_S(a, v)||²_F with each modality scaled by its bandwidth, via Gram matrices:
    ⟨C_X, C_Y⟩ = Σ_ij (a_i·a'_j)(v_i·v'_j) / (n m) for centred rows, so no D x D matrix is formed."""
    def centred(x, sigma):
        return (x - x.mean(0)) / sigma.sqrt()

    ra, rv = centred(p.real_audio, p.sigma_audio), centred(p.real_visual, p.sigma_visual)
    sa, sv = centred(p.syn_audio, p.sigma_audio), centred(p.syn_visual, p.sigma_visual)

    def inner(a1, v1, a2, v2):
        return ((a1 @ a2.T) * (v1 @ v2.T)).sum() / (len(a1) * len(a2))

    return inner(ra, rv, ra, rv) + inner(sa, sv, sa, sv) - 2 * inner(ra, rv, sa, sv)


def avmmd_loss(classes: list[ClassEmbeddings], lam: dict[str, float], kernel: str,
               scales: tuple[float, ...]) -> dict[str, torch.Tensor]:
    """The switched-on terms, each summed over the given classes, and their weighted sum, for the log."""
    terms = {name: classes[0].syn_audio.new_zeros(()) for name in lam}
    for e in classes:
        if len(e.real_audio) < 2:
            raise ConfigError(f"a class has {len(e.real_audio)} real pair(s) in the batch; the kernel bandwidth "
                              "needs at least 2 (raise --real-per-class or add training pairs)")
        p = ClassPairs(e.real_audio, e.real_visual, e.syn_audio, e.syn_visual)
        if "mean" in lam:
            terms["mean"] = terms["mean"] + (p.real_audio.mean(0) - p.syn_audio.mean(0)).pow(2).sum() \
                + (p.real_visual.mean(0) - p.syn_visual.mean(0)).pow(2).sum()
        if "mmd" in lam:
            terms["mmd"] = terms["mmd"] + class_mmd(p, kernel, scales)
        if "cov" in lam:
            terms["cov"] = terms["cov"] + class_cross_covariance(p)
    return {"total": sum(lam[name] * terms[name] for name in terms), **terms}


def class_groups(num_classes: int, per_class: int, syn_batch: int) -> list[list[int]]:
    """Consecutive classes, as many per group as fit `syn_batch` synthetic samples of `per_class` each (at least one;
    0: all in one group): each group's graph is built and freed before the next (one backward pass per group)."""
    size = num_classes if syn_batch == 0 else max(1, syn_batch // per_class)
    return [list(range(start, min(start + size, num_classes))) for start in range(0, num_classes, size)]


# AVDD's preset, and the CPU budget: AV-MMD's validation accuracy on av-digits-hard shows no trend from 25 to
# 200 iterations beyond the runs' spread (benchmarks/budget.py, docs/TUNING.md); 100 lies on it.
BUDGETS = {"paper": {"iterations": 5000, "real_per_class": 128}, "cpu": {"iterations": 100, "real_per_class": 64}}


@register_method("avmmd", AVMMDConfig, "AV-MMD: per-class MMD of joint audio-visual embeddings + DM, "
                                       "herding init, IDM factor chosen per IPC, packed with repetition",
                 kind="synthesis", by_class=True, ablations=ABLATIONS, budgets=BUDGETS, validate=check_terms)
def distill_avmmd(dataset, ipc: int, cfg: AVMMDConfig, run: RunContext):
    lam = weights(cfg)
    scales = parse_scales(cfg.bandwidths)
    prep = dataset.preprocessing
    if cfg.encoders == "bank":
        bank = load_or_train_bank(dataset, BANK, cfg.encoder, Path(cfg.bank_dir) if cfg.bank_dir else None,
                                  run.device, run.progress)
        encoders = lambda iteration: bank.entries[entry_index(run.seed, iteration, len(bank))].encoders  # noqa: E731
    else:
        encoders = lambda iteration: random_encoders(cfg.encoder, prep, run.seed, iteration, run.device)  # noqa: E731

    expanded = ipc * cfg.factor ** 2
    per_class = min(cfg.matched_per_class, expanded) if cfg.matched_per_class else expanded
    groups = class_groups(len(run.group.classes(dataset.num_classes)), per_class, cfg.syn_batch)

    def step(matcher: MeanMatcher, iteration: int, audio: torch.Tensor, frames: torch.Tensor, part: int = 0) -> dict:
        e = matcher.embed_classes(iteration, audio, frames, groups[part], cfg.matched_per_class)
        return avmmd_loss(e, lam, cfg.kernel, scales)

    return distill_matching(dataset, ipc, cfg, run, step, "avmmd", encoders=encoders, parts=len(groups),
                            accumulate=True)
