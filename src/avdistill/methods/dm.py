"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV'23), for AV pairs.

Every iteration (the shared matching step, :class:`avdistill.methods.matching.MeanMatcher`):
  1. draw fresh, randomly initialised audio and visual encoders (never trained, frozen);
  2. draw a batch of real pairs of every class;
  3. augment real and synthetic with the *same* DSA draw (one seed per iteration, shared by
     real/synthetic and by both modalities, as in AVDD);
  4. per class c and modality m: loss += || mean f_m(real_c) - mean f_m(syn_c) ||^2;
  5. one SGD step on the synthetic spectrograms and frames.

Decision (open in the sources): DM's code draws one augmentation seed per class; we follow AVDD
and draw one per iteration, which lets all classes go through the encoders in one batch. The
loss is identical in form; only the augmentation diversity across classes differs. The shared
options also allow herding init and the IDM factor (off by default: plain DM).
"""

from __future__ import annotations

from dataclasses import dataclass

from avdistill.methods.base import RunContext, register_method
from avdistill.methods.matching import ClassMeans, MeanMatchingConfig, distill_class_means, mean_matching_loss


@dataclass
class DMConfig(MeanMatchingConfig):
    pass


def dm_loss(m: ClassMeans) -> dict:
    """Per-modality distribution matching, summed over classes."""
    dm_audio = mean_matching_loss(m.real_audio, m.syn_audio)
    dm_visual = mean_matching_loss(m.real_visual, m.syn_visual)
    return {"total": dm_audio + dm_visual, "dm_audio": dm_audio, "dm_visual": dm_visual}


# Budgets (`--budget`, :mod:`avdistill.methods.budgets`): DM's paper (20000 iterations, 256 real pairs per class)
# and the CPU budget: on av-digits-hard's validation split 300 iterations reach the curve's plateau (100: 46.6 %,
# 300: 48.4, 600: 48.1, 1000: 47.8; benchmarks/budget.py, docs/TUNING.md).
BUDGETS = {"paper": {"iterations": 20000, "real_per_class": 256}, "cpu": {"iterations": 300, "real_per_class": 64}}


@register_method("dm", DMConfig, "Distribution Matching: per-class mean embeddings under random encoders",
                 kind="synthesis", by_class=True, budgets=BUDGETS)
def distill_dm(dataset, ipc: int, cfg: DMConfig, run: RunContext):
    return distill_class_means(dataset, ipc, cfg, run, dm_loss, "dm")
