"""AVDD: Audio-Visual Dataset Distillation (Kushwaha et al., TMLR 2024) = DM + cross-modal matching.

Every iteration, from the shared matching step's per-class means (μ_aR, μ_vR real; μ_aS, μ_vS
synthetic, the synthetic set expanded by the IDM factor technique before augmentation):
  DM   = ||μ_aR − μ_aS||² + ||μ_vR − μ_vS||²                       (per-modality distribution matching)
  JM   = ||(μ_aR + μ_vR) − (μ_aS + μ_vS)||²                         (Joint Matching; code: λ_icm)
  MGM  = ||(μ_aR − μ_vR) − (μ_aS − μ_vS)||²                         (Modality Gap Matching; code: λ_cgm)
  loss = Σ_classes DM + λ_jm·JM + λ_mgm·MGM,   λ_jm = λ_mgm = 10,
then one SGD step (lr 0.2 on both modalities, momentum 0.5). Initialisation: herding on joint AV
features, with the factor 2 (each stored sample packs 4 herded real pairs downscaled x0.5).

What the cross-modal terms do: with Δa = μ_aR − μ_aS and Δv = μ_vR − μ_vS, the parallelogram
law gives  loss = (1 + λ_jm + λ_mgm)(||Δa||² + ||Δv||²) + 2(λ_jm − λ_mgm)⟨Δa, Δv⟩.  At the
paper's equal weights λ the coupling cancels and loss = (1 + 2λ)·DM (21x at λ = 10): JM and MGM
only rescale the DM gradient, i.e. act as a larger step size. Unequal weights (λ_jm ≠ λ_mgm)
give a real audio-visual coupling term, ±⟨Δa, Δv⟩. The terms stay literal so ablations behave
as in the paper, and every term is logged per iteration.

Decisions: the paper's code steps the optimiser once per class, on one momentum buffer; we step
once per iteration over all classes (as DM) unless ``--update per-class`` asks for the code's
order (docs/METHODS.md, "Update order": the two are not equivalent, as momentum decays once per
class vs once per iteration). Defaults are the paper's preset (5000 iterations, 128 real pairs per class);
on a CPU pass fewer, e.g. ``--iterations 300 --real-per-class 64``.
Ablation rows of the paper as options: random init (``--init real --factor 1 --lam-jm 0
--lam-mgm 0``), herding init (``--init herding --factor 1``, no λ), random + factor
(``--init real --factor 2``, no λ), herding + base (``--factor 2``, no λ), + JM (``--lam-mgm 0``),
+ JM + MGM (the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from avdistill.config import option, redefault
from avdistill.errors import ConfigError
from avdistill.methods.base import RunContext, register_method
from avdistill.methods.matching import ClassMeans, MeanMatchingConfig, distill_class_means, mean_matching_loss
from avdistill.searchspace import log_uniform, one_of, uniform


@dataclass
class AVDDConfig(MeanMatchingConfig):
    iterations: int = redefault(MeanMatchingConfig, "iterations", 5000, "AVDD: 5000")
    real_per_class: int = redefault(MeanMatchingConfig, "real_per_class", 128, "AVDD: 128")
    lr_audio: float = redefault(MeanMatchingConfig, "lr_audio", 0.2, "AVDD: 0.2", search=log_uniform(0.01, 5))
    lr_frames: float = redefault(MeanMatchingConfig, "lr_frames", 0.2, "AVDD: 0.2", search=log_uniform(0.01, 5))
    init: str = redefault(MeanMatchingConfig, "init", "herding", "AVDD: herding", search=one_of("herding", "real"))
    factor: int = redefault(MeanMatchingConfig, "factor", 2, "AVDD: 2")
    lam_jm: float = option(10.0, "weight of Joint Matching (AVDD: 10); equal to --lam-mgm it only rescales DM",
                           search=uniform(0, 20))
    lam_mgm: float = option(10.0, "weight of Modality Gap Matching (AVDD: 10); unequal to --lam-jm couples Δa and Δv",
                            search=uniform(0, 20))


# The paper's ablation rows as option overrides (`avdistill bench --ablations avdd` runs them).
ABLATIONS = {
    "random init": {"init": "real", "factor": 1, "lam_jm": 0.0, "lam_mgm": 0.0},
    "herding init": {"init": "herding", "factor": 1, "lam_jm": 0.0, "lam_mgm": 0.0},
    "random init + factor": {"init": "real", "factor": 2, "lam_jm": 0.0, "lam_mgm": 0.0},
    "herding + factor (base)": {"lam_jm": 0.0, "lam_mgm": 0.0},
    "+ JM": {"lam_mgm": 0.0},
    "+ JM + MGM (AVDD)": {},
}

# The paper's budget, and the CPU one: validation accuracy on av-digits-hard is flat from 25 to 200
# iterations (benchmarks/budget.py, docs/TUNING.md); 100 lies on that plateau, minutes on 2 cores.
BUDGETS = {"paper": {"iterations": 5000, "real_per_class": 128}, "cpu": {"iterations": 100, "real_per_class": 64}}


def avdd_loss(m: ClassMeans, lam_jm: float, lam_mgm: float) -> dict:
    """DM + λ_jm·JM + λ_mgm·MGM, summed over classes, with every term for the log."""
    if m.real_audio.shape != m.real_visual.shape:
        raise ConfigError(f"JM and MGM add audio and visual embeddings, but the encoders give "
                          f"{m.real_audio.shape[1]}-d audio and {m.real_visual.shape[1]}-d visual embeddings")
    dm_audio = mean_matching_loss(m.real_audio, m.syn_audio)
    dm_visual = mean_matching_loss(m.real_visual, m.syn_visual)
    jm = mean_matching_loss(m.real_audio + m.real_visual, m.syn_audio + m.syn_visual)
    mgm = mean_matching_loss(m.real_audio - m.real_visual, m.syn_audio - m.syn_visual)
    total = dm_audio + dm_visual + lam_jm * jm + lam_mgm * mgm
    return {"total": total, "dm_audio": dm_audio, "dm_visual": dm_visual, "jm": jm, "mgm": mgm}


@register_method("avdd", AVDDConfig, "AVDD: DM + joint and modality-gap matching, herding init, IDM factor",
                 kind="synthesis", by_class=True, ablations=ABLATIONS, budgets=BUDGETS)
def distill_avdd(dataset, ipc: int, cfg: AVDDConfig, run: RunContext):
    return distill_class_means(dataset, ipc, cfg, run, lambda m: avdd_loss(m, cfg.lam_jm, cfg.lam_mgm), "avdd")
