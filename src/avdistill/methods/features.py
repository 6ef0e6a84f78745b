"""Selecting real training pairs: their features from encoders trained on the real training
split, per-class selection in that space, and the selected pairs as synthetic-set tensors.

Herding and k-center rank real samples in a feature space. AVDD leaves open which encoders
give it; we train one (audio, visual, head) triple with the evaluation protocol on the whole
training split (seeded, so different seeds give different, reproducible coresets) and embed
every training pair with the trained encoders, without augmentation.

Decisions: the 'av' (joint) space concatenates the audio and visual embeddings after
L2-normalising each per sample, so neither modality dominates through its scale or dimension;
'audio' and 'visual' use one normalised embedding. Trained features are kept in memory for
the life of the process (keyed by dataset checksum, training settings and seed), never on disk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.evaluation.protocol import EvalConfig, train_networks
from avdistill.methods.factor import pack
from avdistill.seeding import derive_seed

SPACES = ("av", "audio", "visual")

_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _embed_train(dataset: AVDataset, encoder: str, epochs: int, seed: int, progress: bool,
                 batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    f_audio, f_visual, _ = train_networks(dataset.train, dataset, EvalConfig(epochs=epochs, encoder=encoder),
                                          derive_seed(seed, "encoders", 20_000), progress=progress)
    return embed_train_pairs(f_audio, f_visual, dataset, batch_size)


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
    if space not in SPACES:
        raise ConfigError(f"feature space must be one of {', '.join(SPACES)}, got {space!r}")
    if epochs < 1:
        raise ConfigError(f"feature encoders need at least 1 training epoch, got {epochs}")
    key = (dataset.checksum, encoder, epochs, seed)
    embedded = _CACHE.get(key) if dataset.checksum else None  # no checksum, no identity: recompute
    if embedded is None:
        embedded = _embed_train(dataset, encoder, epochs, seed, progress)
        if dataset.checksum:
            _CACHE[key] = embedded
    audio, visual = (F.normalize(x, dim=1) for x in embedded)
    return {"av": torch.cat([audio, visual], dim=1), "audio": audio, "visual": visual}[space]


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
    are packed into one stored sample by the IDM factor technique (:func:`avdistill.methods.factor.pack`).
    """
    audio, frames, labels = dataset.model_inputs(dataset.train.subset(indices))
    return pack(audio, factor), pack(frames, factor), labels[::factor * factor].clone()
