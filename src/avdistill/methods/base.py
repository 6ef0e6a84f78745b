"""The one interface every distillation method implements, and its registry.

A method is a function ``(dataset, ipc, config, run) -> (audio, frames, labels)`` in model
space, registered with a config dataclass whose fields (with ``help`` metadata) become the
command-line options of ``avdistill distill --method NAME``. A method registered ``by_class``
can be split by class across the processes of a multi-process run (:mod:`avdistill.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from avdistill.data.dataset import AVDataset
from avdistill.config import build_config
from avdistill.distributed import Group
from avdistill.errors import ConfigError
from avdistill.methods.watch import Watch


@dataclass
class RunContext:
    """Where and how a method runs: its seed, device, output folder (checkpoints, logs), progress bars,
    process group (one process unless launched by torchrun) and what watches its loop (time limit, checks)."""

    seed: int = 0
    device: str = "cpu"
    workdir: Path | None = None
    progress: bool = True
    fingerprint: str = ""
    group: Group = Group()
    watch: Watch | None = None


def option(default, help: str, **kwargs):
    """A config field that documents itself on the command line; `kwargs` may constrain its values
    (minimum, above, maximum, below, choices, check: see :func:`avdistill.config.check_value`)."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Callable[[AVDataset, int, object, RunContext], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    config_class: type
    summary: str
    by_class: bool = False


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config_class: type, summary: str, by_class: bool = False):
    """`by_class`: the method's loss is a sum over classes, each touching only its class's synthetic rows."""
    def wrap(fn):
        METHODS[name] = MethodSpec(name, fn, config_class, summary, by_class)
        return fn
    return wrap


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


def make_config(spec: MethodSpec, overrides: dict | None = None):
    """The method's config with `overrides` applied; unknown names are a ConfigError."""
    return build_config(spec.config_class, dict(overrides or {}))


def fingerprint(method: str, ipc: int, config, seed: int, dataset: AVDataset, group: Group = Group()) -> str:
    """Identity of a run, stored in checkpoints so a resume never mixes two different runs (nor the
    processes of one: a multi-process run adds world size and rank; a single process's is unchanged)."""
    identity = {"method": method, "ipc": ipc, "seed": seed, "config": dataclasses.asdict(config),
                "dataset": dataset.checksum}
    if group.world_size > 1:
        identity.update(world_size=group.world_size, rank=group.rank)
    return json.dumps(identity, sort_keys=True)
