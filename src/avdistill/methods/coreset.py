"""Selecting real training pairs (coresets): their features from networks trained on the real
training split, greedy herding in that space, per-class selection, and the selected pairs as
synthetic-set tensors. Shared by the herding and k-center coresets and by herding initialisation.

Herding and k-center rank real samples in a feature space. AVDD leaves open which encoders
give it; we train one (audio, visual, head) triple with the evaluation protocol's recipe on the
whole training split (seeded, so different seeds give different, reproducible coresets) and embed
every training pair with the trained encoders, without augmentation.

Herding (Welling, ICML'09): per class, greedily pick the real pair whose feature brings the
running mean of the picks closest to the class mean.

``--factor F`` (> 1) packs F² consecutive picks of a class into each stored pair with the IDM
factor technique and no optimisation: "herding + factor" is AVDD's initialisation, unoptimised.

Decisions: the 'av' (joint) space concatenates the audio and visual embeddings after
L2-normalising each per sample, so neither modality dominates through its scale or dimension;
'audio' and 'visual' use one normalised embedding. Trained features are kept in memory for
the life of the process (:class:`avdistill.cache.TensorCache` in memory, keyed by dataset checksum,
training settings, seed and code), never on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avdistill.cache import TensorCache
from avdistill.config import option
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.factor import MAX_FACTOR, pack
from avdistill.models import PRESETS
from avdistill.seeding import derive_seed
from avdistill.training import TrainConfig, train_networks

SPACES = ("av", "audio", "visual")
# The source files the features depend on (a change to any of them computes them again).
FEATURE_CODE = ("models", "augment", "training.py", "seeding.py", "data/dataset.py", "methods/coreset.py")


@dataclass
class CoresetConfig:
    space: str = option("av", "feature space to rank in: 'av' (joint), 'audio' or 'visual'", choices=SPACES)
    encoder: str = option("small", "encoder preset of the feature networks", choices=tuple(PRESETS), what="encoder preset")
    feature_epochs: int = option(10, "epochs of training the feature networks on the real training split",
                                minimum=1)
    factor: int = option(1, "IDM factor: pack factor x factor selected real pairs (consecutive picks) into each "
                            "stored pair, no optimisation (1: plain)", minimum=1, maximum=MAX_FACTOR)


def embed_train_pairs(f_audio, f_visual, dataset: AVDataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """[N_train, D_a] and [N_train, D_v] embeddings of every training pair, eval mode, no augmentation."""
    f_audio.eval(), f_visual.eval()
    device = next(f_audio.parameters()).device
    audio_parts, visual_parts = [], []
    with torch.no_grad():
        for idx in torch.arange(len(dataset.train)).split(batch_size):
            audio, frames, _ = dataset.model_inputs(dataset.train.subset(idx))
            audio_parts.append(f_audio(audio.to(device)))
            visual_parts.append(f_visual(frames.to(device)))
    return torch.cat(audio_parts), torch.cat(visual_parts)


def train_features(dataset: AVDataset, space: str, encoder: str = "small", epochs: int = 10,
                   seed: int = 0, progress: bool = False) -> torch.Tensor:
    """[N_train, D] features of every training pair in `space` ('av', 'audio' or 'visual')."""
    def compute():
        cfg = TrainConfig(epochs=epochs, encoder=encoder)
        f_audio, f_visual, _ = train_networks(dataset.train, dataset, cfg, derive_seed(seed, "encoders", 20_000),
                                              progress=progress)
        audio, visual = embed_train_pairs(f_audio, f_visual, dataset)
        return {"audio": audio, "visual": visual}, {}

    cache = TensorCache("features", {"dataset": dataset.checksum, "encoder": encoder, "epochs": epochs, "seed": seed},
                        FEATURE_CODE, memory=bool(dataset.checksum))  # no checksum, no identity: recompute
    embedded, _ = cache.get("features", compute)
    audio, visual = F.normalize(embedded["audio"], dim=1), F.normalize(embedded["visual"], dim=1)
    return {"av": torch.cat([audio, visual], dim=1), "audio": audio, "visual": visual}[space]


def herd(features: torch.Tensor, n: int) -> torch.Tensor:
    """Positions (into `features`) of `n` greedy herding picks, in pick order, without repeats."""
    target = features.mean(0)
    picked: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool)
    for k in range(1, n + 1):
        gap = (target - (total + features) / k).pow(2).sum(1)  # distance of each candidate running mean
        gap[~available] = float("inf")
        best = int(gap.argmin())
        picked.append(best)
        total += features[best]
        available[best] = False
    return torch.tensor(picked, dtype=torch.long)


def herding_indices(dataset: AVDataset, per_class: int, space: str, encoder: str, feature_epochs: int,
                    seed: int, progress: bool = False) -> torch.Tensor:
    features = train_features(dataset, space, encoder, feature_epochs, seed, progress)
    return select_by_class(dataset, per_class, features, herd)


def check_class_sizes(dataset: AVDataset, ipc: int, factor: int = 1) -> None:
    """Every class must hold the ipc x factor² real pairs a selection or initialisation takes."""
    need = ipc * factor * factor
    for c, idx in enumerate(dataset.train.class_indices(dataset.num_classes)):
        if len(idx) < need:
            times = f" x factor² = {need}" if factor > 1 else ""
            raise ConfigError(f"class {dataset.classes[c]!r} of {dataset.name} has {len(idx)} training pairs, "
                              f"fewer than ipc={ipc}{times}")


def select_by_class(dataset: AVDataset, per_class: int, features: torch.Tensor, rank) -> torch.Tensor:
    """Training-set indices: `rank(class_features, per_class)` applied class by class, ordered by class."""
    check_class_sizes(dataset, per_class)
    return torch.cat([idx[rank(features[idx], per_class)] for idx in dataset.train.class_indices(dataset.num_classes)])


def real_pairs(dataset: AVDataset, indices: torch.Tensor,
               factor: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model-space (audio, frames, labels) of the given training pairs, as a synthetic set's tensors.

    With `factor` > 1, every factor² consecutive pairs (of one class: indices come class by class)
    are packed into one stored sample by the IDM factor technique (:func:`avdistill.factor.pack`).
    """
    audio, frames, labels = dataset.model_inputs(dataset.train.subset(indices))
    return pack(audio, factor), pack(frames, factor), labels[::factor * factor].clone()
