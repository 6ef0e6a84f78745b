"""Expert trajectories for trajectory matching (MTT): AV networks trained on the real training
split, their parameters stored after every epoch, cached on disk and reused across runs.

An expert is the evaluation protocol's network (audio encoder + visual encoder + fusion head,
:class:`AVNetwork`), trained as MTT trains its experts, with the shared epoch loop
(:func:`avdistill.training.train_epochs`): plain SGD (no momentum, no weight decay, one learning
rate for all three parts), DSA applied to each modality independently with per-sample parameters.
Its trajectory is one float32 tensor [epochs + 1, P]: row t holds all P parameters, flattened in
``named_parameters`` order (:class:`ParameterLayout`), after t epochs.

Storage (:class:`avdistill.cache.TensorCache`, under ``expert_dir`` or the user cache): one
safetensors file per expert (never pickle), written atomically, keyed by the dataset checksum, the
expert settings, the network (encoder preset, head, DSA), the parameter layout, and the version
and source code that trains it; so a run with the same data, settings and code loads the experts
instead of training them, and a damaged file is trained again. A dataset without a checksum
(built in memory) has no identity to key on: its experts are trained in memory and not cached.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from avdistill.augment import DSA
from avdistill.cache import TensorCache
from avdistill.config import option
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.files import user_cache_dir, versions
from avdistill.models import get_encoders
from avdistill.models.heads import HEADS
from avdistill.seeding import derive_seed
from avdistill.training import train_epochs

# The source files an expert depends on (a change to any of them trains it again).
EXPERT_CODE = ("models", "augment", "training.py", "seeding.py", "data/dataset.py", "methods/trajectories.py")


@dataclass
class ExpertTraining:
    """How MTT's experts are trained (besides their network: encoder preset, head and DSA)."""

    expert_train_epochs: int = option(8, "epochs each expert is trained (MTT: 50)", minimum=1)
    expert_lr: float = option(0.01, "the experts' plain-SGD learning rate (MTT: 0.01)", above=0)
    expert_batch: int = option(32, "the experts' batch size (MTT: 256 on 50k images)", minimum=1)
    expert_seed: int = option(0, "seed of the expert bank (shared by runs of any seed)")


class AVNetwork(nn.Module):
    """Audio encoder + visual encoder + fusion head as one module, so one parameter vector is all three."""

    def __init__(self, audio: nn.Module, visual: nn.Module, head: nn.Module):
        super().__init__()
        self.audio, self.visual, self.head = audio, visual, head

    def forward(self, audio: torch.Tensor, frames: torch.Tensor):
        return self.head(self.audio(audio), self.visual(frames))

    def loss(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        return self.head.loss(outputs, labels)


def build_network(dataset: AVDataset, encoder: str, head: str, seed: int) -> AVNetwork:
    """A fresh AV network, its weights a pure function of `seed`. Both encoders must be read and hold no buffers."""
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    if set(HEADS[head].modalities) != {"audio", "visual"}:
        raise ConfigError(f"MTT matches the parameters of both encoders; head {head!r} reads only one modality")
    prep = dataset.preprocessing
    f_audio, f_visual = get_encoders(encoder, prep.audio_shape, prep.frame_shape, derive_seed(seed, "expert", 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "expert", 1))
        fusion = HEADS[head](f_audio.embed_dim, f_visual.embed_dim, dataset.num_classes)
    network = AVNetwork(f_audio, f_visual, fusion)
    if any(True for _ in network.buffers()):
        raise ConfigError(f"MTT needs encoders without running statistics (buffers); preset {encoder!r} has "
                          "batch norm: pick one with instance norm or none")
    return network


class ParameterLayout:
    """Names and shapes of a network's parameters: dict of tensors <-> one flat vector."""

    def __init__(self, network: nn.Module):
        self.names = [name for name, _ in network.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in network.named_parameters()]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.size = sum(self.sizes)

    def flatten(self, network: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in network.parameters()])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of `flat` shaped like the parameters, for ``torch.func.functional_call`` (gradients flow)."""
        return {name: part.view(shape) for name, shape, part in zip(self.names, self.shapes, flat.split(self.sizes))}

    def describe(self) -> str:
        return json.dumps([[name, list(shape)] for name, shape in zip(self.names, self.shapes)])


def train_expert(dataset: AVDataset, cfg: ExpertTraining, encoder: str, head: str, augment: str, index: int,
                 progress: bool = False) -> torch.Tensor:
    """[epochs + 1, P]: the parameters of expert `index` at its start and after every epoch of plain SGD."""
    seed = derive_seed(cfg.expert_seed, "expert", index)
    network = build_network(dataset, encoder, head, seed)
    layout = ParameterLayout(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=cfg.expert_lr)  # MTT's experts: no momentum, no weight decay
    trajectory = [layout.flatten(network)]
    train_epochs(lambda audio, frames, labels: network.loss(network(audio, frames), labels), optimizer, dataset.train,
                 dataset, epochs=cfg.expert_train_epochs, batch_size=cfg.expert_batch, augment=DSA(augment), seed=seed,
                 networks=[network], after_epoch=lambda: trajectory.append(layout.flatten(network)),
                 progress=progress, desc=f"expert {index}")
    return torch.stack(trajectory)


def expert_trajectories(dataset: AVDataset, cfg: ExpertTraining, encoder: str, head: str, augment: str, count: int,
                        folder: Path | None = None, progress: bool = False) -> list[torch.Tensor]:
    """`count` expert trajectories for `dataset`: loaded from the cache where present, else trained and stored."""
    layout = ParameterLayout(build_network(dataset, encoder, head, 0))
    identity = {"dataset": dataset.checksum, "training": dataclasses.asdict(cfg), "encoder": encoder, "head": head,
                "augment": augment, "layout": layout.describe()}
    cache = TensorCache("mtt-experts", identity, EXPERT_CODE,
                        (folder or user_cache_dir("mtt-experts")) if dataset.checksum else None)
    shape = (cfg.expert_train_epochs + 1, layout.size)
    trajectories = []
    for k in tqdm(range(count), desc="experts", disable=not progress, dynamic_ncols=True):
        def train(k=k):
            return ({"trajectory": train_expert(dataset, cfg, encoder, head, augment, k, progress)},
                    {"expert": k, "versions": versions()})
        tensors, _ = cache.get(f"expert_{k:03d}", train)
        if tuple(tensors["trajectory"].shape) != shape:  # the key pins the shape: only a bug could get here
            raise ConfigError(f"expert {k} has a trajectory of shape {tuple(tensors['trajectory'].shape)}, "
                              f"expected {shape}")
        trajectories.append(tensors["trajectory"])
    return trajectories
