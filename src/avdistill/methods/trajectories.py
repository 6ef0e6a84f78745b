"""Expert trajectories for trajectory matching (MTT): AV networks trained on the real training
split, their parameters stored after every epoch, cached on disk and reused across runs.

An expert is the evaluation protocol's network (audio encoder + visual encoder + fusion head,
:class:`AVNetwork`), trained as MTT trains its experts: plain SGD (no momentum, no weight decay,
one learning rate for all three parts), DSA applied to each modality independently with
per-sample parameters. Its trajectory is one float32 tensor [epochs + 1, P]: row t holds all P
parameters, flattened in ``named_parameters`` order (:class:`ParameterLayout`), after t epochs.

Storage: one safetensors file per expert (never pickle), written atomically, its header holding
the expert config, the dataset checksum, the parameter layout and the software versions. The
cache folder is ``<expert_dir>/<key>/``, the key a hash of the dataset checksum and the expert
config, so a run with the same data and expert settings loads the experts instead of training
them; a file whose header disagrees with the expected settings is a DataError, never used. A
dataset without a checksum (built in memory) has no identity to key on: its experts are trained
in memory and not cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from avdistill.augment import DEFAULT_STRATEGY, DSA
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError, DataError
from avdistill.io import atomic_path, user_cache_dir, versions
from avdistill.models import get_encoders
from avdistill.models.heads import HEADS
from avdistill.seeding import derive_seed, generator

FORMAT = "avdistill-expert-trajectory/1"


@dataclass(frozen=True)
class ExpertConfig:
    """Everything an expert's trajectory depends on besides the data (and so the cache key)."""

    encoder: str = "small"
    head: str = "ensemble"
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 32
    augment: str = DEFAULT_STRATEGY
    seed: int = 0

    def key(self, checksum: str) -> str:
        text = json.dumps({"format": FORMAT, "dataset": checksum, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def train_expert(dataset: AVDataset, cfg: ExpertConfig, index: int, progress: bool = False) -> torch.Tensor:
    """[epochs + 1, P]: the parameters of expert `index` at its start and after every epoch of plain SGD."""
    seed = derive_seed(cfg.seed, "expert", index)
    network = build_network(dataset, cfg.encoder, cfg.head, seed)
    layout = ParameterLayout(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=cfg.lr)  # MTT's experts: no momentum, no weight decay
    augment = DSA(cfg.augment)
    shuffle = generator(seed, "shuffle")
    trajectory = [layout.flatten(network)]
    step = 0
    network.train()
    for _ in tqdm(range(cfg.epochs), desc=f"expert {index}", leave=False, disable=not progress):
        for idx in torch.randperm(len(dataset.train), generator=shuffle).split(cfg.batch_size):
            audio, frames, labels = dataset.model_inputs(dataset.train.subset(idx))
            audio = augment(audio, derive_seed(seed, "augment", step, 0), siamese=False)
            frames = augment(frames, derive_seed(seed, "augment", step, 1), siamese=False)
            loss = network.loss(network(audio, frames), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        trajectory.append(layout.flatten(network))
    return torch.stack(trajectory)


def expert_trajectories(dataset: AVDataset, cfg: ExpertConfig, count: int, folder: Path | None = None,
                        progress: bool = False) -> list[torch.Tensor]:
    """`count` expert trajectories for `dataset`: loaded from the cache where present, else trained and stored."""
    layout = ParameterLayout(build_network(dataset, cfg.encoder, cfg.head, 0))
    if not dataset.checksum:
        return [train_expert(dataset, cfg, k, progress) for k in range(count)]
    cache = Path(folder or user_cache_dir("mtt-experts")) / cfg.key(dataset.checksum)
    header = {"format": FORMAT, "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
              "dataset": dataset.checksum, "layout": layout.describe()}
    trajectories = []
    for k in tqdm(range(count), desc="experts", disable=not progress, dynamic_ncols=True):
        path = cache / f"expert_{k:03d}.safetensors"
        if not path.exists():
            trajectory = train_expert(dataset, cfg, k, progress)
            with atomic_path(path) as tmp:
                save_file({"trajectory": trajectory.contiguous()}, str(tmp),
                          metadata={**header, "expert": str(k), "versions": json.dumps(versions(), sort_keys=True)})
        trajectories.append(load_expert(path, header, (cfg.epochs + 1, layout.size)))
    return trajectories


def load_expert(path: Path, header: dict[str, str], shape: tuple[int, int]) -> torch.Tensor:
    """One stored trajectory (safetensors, no pickle), checked against the settings it must have been made with."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        trajectory = load_file(str(path))["trajectory"]
    except Exception as exc:  # safetensors raises several types for damaged files
        raise DataError(path, f"not a readable expert trajectory ({exc})") from None
    for name, expected in header.items():
        if meta.get(name) != expected:
            raise DataError(path, f"expert header field {name!r} does not match this run's settings; "
                                  "delete the file to retrain it")
    if tuple(trajectory.shape) != shape:
        raise DataError(path, f"expert trajectory has shape {tuple(trajectory.shape)}, expected {shape}")
    return trajectory
