"""What every synthesis method shares: its base options (the optimisation loop's budget and step
sizes, the initial set, the encoders, DSA) and the initial set built from them.

A synthesis method's config extends :class:`SynthesisConfig` (changing defaults where its paper
does) and starts from :func:`starting_set`; the distribution-matching family adds its matching
options (:class:`avdistill.methods.matching.MatchingConfig`), MTT its trajectory options.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avdistill.augment import DEFAULT_STRATEGY, DSA
from avdistill.config import nested, option
from avdistill.data.dataset import AVDataset
from avdistill.factor import MAX_FACTOR
from avdistill.methods.initial_set import INITS, PACKINGS, HerdingInit, initial_synthetic, smallest_class
from avdistill.models import PRESETS
from avdistill.searchspace import log_uniform, one_of, uniform


@dataclass
class SynthesisConfig:
    """Options every synthesis method has; defaults and search ranges (``avdistill tune``) are DM's for AV-Digits
    on a CPU."""

    iterations: int = option(300, "optimisation steps",
                             "the DM paper uses 20000 (--budget paper); 300 is DM's cpu budget, the plateau of its "
                             "validation curve on av-digits-hard (docs/TUNING.md)", minimum=1)
    lr_audio: float = option(1.0, "SGD learning rate on the synthetic spectrograms", "DM: 1.0", above=0,
                             search=log_uniform(0.05, 20))
    lr_frames: float = option(1.0, "SGD learning rate on the synthetic frames", "DM: 1.0", above=0,
                              search=log_uniform(0.05, 20))
    momentum: float = option(0.5, "SGD momentum", "DM: 0.5", minimum=0, below=1, search=uniform(0, 0.9))
    init: str = option("real", "initial synthetic set: 'real' (random real pairs), 'herding' or 'noise' (Gaussian)",
                       choices=INITS, search=one_of("real", "herding"))
    factor: int = option(1, "IDM factor: each stored sample holds factor x factor downscaled samples (1: off)",
                         minimum=1, maximum=MAX_FACTOR, search=one_of(1, 2))
    pack: str = option("shrink", "a class with fewer than IPC x factor² training pairs to pack: 'shrink' (run at the "
                                 "largest factor that fits) or 'repeat' (keep the factor, repeat the class's pairs "
                                 "in the init's order)", choices=PACKINGS)
    herding: HerdingInit = nested(HerdingInit)
    encoder: str = option("small", "encoder preset: 'small' (CPU, small inputs) or 'avdd' (the paper's ConvNets)",
                          choices=tuple(PRESETS), what="encoder preset")
    augment: str = option(DEFAULT_STRATEGY, "DSA ops joined by '_', or 'none'", check=DSA)
    checkpoint_every: int = option(50, "iterations between checkpoints (resume after interruption)", minimum=1)

    def factor_for(self, ipc: int, dataset: AVDataset) -> int:
        """The IDM factor a run at `ipc` uses: --factor, or the largest smaller one whose packed initialisation
        fits (ipc x factor² real pairs in every class; e.g. AVDD's factor 2 at IPC 20 on a dataset with 66 pairs
        per class runs at factor 1). The papers' code has no such case (it indexes past the class); stopping
        with an error would leave IPC 20 unreachable on small datasets, so the run goes on and records the
        factor it used (a method may also choose it per IPC, e.g. AV-MMD)."""
        return fitting_factor(self.factor, ipc, dataset) if self.init != "noise" and self.pack == "shrink" \
            else self.factor


def fitting_factor(factor: int, ipc: int, dataset: AVDataset) -> int:
    """The largest IDM factor up to `factor` for which every class holds ipc x factor² training pairs (at least 1)."""
    smallest = smallest_class(dataset)
    while factor > 1 and ipc * factor * factor > smallest:
        factor -= 1
    return factor


def starting_set(dataset: AVDataset, ipc: int, cfg: SynthesisConfig, seed: int,
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The set a synthesis method starts from: `cfg`'s init, IDM factor and herding feature networks."""
    return initial_synthetic(dataset, ipc, cfg.init, seed, cfg.factor, cfg.herding, cfg.encoder, progress,
                             repeat=cfg.pack == "repeat")
