"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV'23), for AV pairs.

Every iteration:
  1. draw fresh, randomly initialised audio and visual encoders (never trained, frozen);
  2. draw a batch of real pairs of every class;
  3. augment real and synthetic with the *same* DSA draw (one seed per iteration, shared by
     real/synthetic and by both modalities, as in AVDD);
  4. per class c and modality m: loss += || mean f_m(real_c) - mean f_m(syn_c) ||^2;
  5. one SGD step on the synthetic spectrograms and frames.

Decision (open in the sources): DM's code draws one augmentation seed per class; we follow AVDD
and draw one per iteration, which lets all classes go through the encoders in one batch. The
loss is identical in form; only the augmentation diversity across classes differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avdistill.augment import DSA, DEFAULT_STRATEGY
from avdistill.methods.base import RunContext, option, register_method
from avdistill.methods.init import initial_synthetic
from avdistill.methods.loop import optimise_synthetic
from avdistill.methods.matching import RealSampler, class_means, mean_matching_loss
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed


@dataclass
class DMConfig:
    iterations: int = option(300, "optimisation steps (the DM paper uses 20000; 300 suffices for AV-Digits on CPU)")
    real_per_class: int = option(64, "real pairs per class embedded at every iteration (DM paper: 256)")
    lr_audio: float = option(1.0, "SGD learning rate on the synthetic spectrograms (DM: 1.0)")
    lr_frames: float = option(1.0, "SGD learning rate on the synthetic frames (DM: 1.0)")
    momentum: float = option(0.5, "SGD momentum (DM: 0.5)")
    init: str = option("real", "initial synthetic set: 'real' (random real pairs) or 'noise' (Gaussian)")
    encoder: str = option("small", "encoder preset: 'small' (CPU, small inputs) or 'avdd' (the paper's ConvNets)")
    augment: str = option(DEFAULT_STRATEGY, "DSA ops joined by '_', or 'none'")
    checkpoint_every: int = option(50, "iterations between checkpoints (resume after interruption)")


@register_method("dm", DMConfig, "Distribution Matching: per-class mean embeddings under random encoders")
def distill_dm(dataset, ipc: int, cfg: DMConfig, run: RunContext):
    audio, frames, labels = initial_synthetic(dataset, ipc, cfg.init, run.seed)
    labels = labels.to(run.device)
    sampler = RealSampler(dataset, cfg.real_per_class, run.device)
    augment = DSA(cfg.augment)
    prep = dataset.preprocessing
    C = dataset.num_classes

    def loss_terms(iteration: int, syn_audio: torch.Tensor, syn_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        f_audio, f_visual = get_encoders(cfg.encoder, prep.audio_shape, prep.frame_shape,
                                         derive_seed(run.seed, "encoders", iteration), run.device)
        for p in (*f_audio.parameters(), *f_visual.parameters()):
            p.requires_grad_(False)
        real_audio, real_frames, real_labels = sampler.sample(run.seed, iteration)
        aug_seed = derive_seed(run.seed, "augment", iteration)
        with torch.no_grad():
            real_a = class_means(f_audio(augment(real_audio, aug_seed)), real_labels, C)
            real_v = class_means(f_visual(augment(real_frames, aug_seed)), real_labels, C)
        syn_a = class_means(f_audio(augment(syn_audio, aug_seed)), labels, C)
        syn_v = class_means(f_visual(augment(syn_frames, aug_seed)), labels, C)
        dm_audio = mean_matching_loss(real_a, syn_a)
        dm_visual = mean_matching_loss(real_v, syn_v)
        return {"total": dm_audio + dm_visual, "dm_audio": dm_audio, "dm_visual": dm_visual}

    audio, frames = optimise_synthetic(
        audio.to(run.device), frames.to(run.device), loss_terms, iterations=cfg.iterations,
        lr_audio=cfg.lr_audio, lr_frames=cfg.lr_frames, momentum=cfg.momentum, fingerprint=run.fingerprint,
        workdir=run.workdir, checkpoint_every=cfg.checkpoint_every, progress=run.progress, desc=f"dm ipc={ipc}")
    return audio.cpu(), frames.cpu(), labels.cpu()
