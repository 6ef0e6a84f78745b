"""The one interface every distillation method implements, and its registry.

A method is a function ``(dataset, ipc, config, run) -> (audio, frames, labels)`` in model
space, registered with a config dataclass whose fields (with ``help`` metadata) become the
command-line options of ``avdistill distill --method NAME``. The registration declares what the
rest of the toolkit needs to know about the method instead of letting it guess: its kind (a
coreset selects real pairs, a synthesis method optimises them), the ablation rows it defines, the
checks across options that single-option bounds cannot express, and whether it can be split by
class across the processes of a multi-process run (:mod:`avdistill.distributed`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from avdistill.config import build_config, flat_dict
from avdistill.data.dataset import AVDataset
from avdistill.distributed import Group
from avdistill.errors import ConfigError
from avdistill.methods.watch import Watch
from avdistill.run_folder import RunFolder

KINDS = ("coreset", "synthesis")


@dataclass
class RunContext:
    """Where and how a method runs: its seed, device, run folder (checkpoints, logs), progress bars,
    process group (one process unless launched by torchrun) and what watches its loop (time limit, checks)."""

    seed: int = 0
    device: str = "cpu"
    folder: RunFolder | None = None
    progress: bool = True
    fingerprint: str = ""
    group: Group = Group()
    watch: Watch | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered method. `ablations`: row label -> option overrides (``bench --ablations``); `budgets`:
    budget name -> option overrides (``--budget``, :mod:`avdistill.methods.budgets`); `validate`:
    checks across options, raising ConfigError; `by_class`: the loss is a sum over classes, each touching
    only its class's synthetic rows, so processes can split the classes."""

    name: str
    run: Callable[[AVDataset, int, object, RunContext], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    config_class: type
    summary: str
    kind: str
    by_class: bool = False
    ablations: dict[str, dict] = field(default_factory=dict)
    budgets: dict[str, dict] = field(default_factory=dict)
    validate: Callable[[object], None] | None = None


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, config_class: type, summary: str, kind: str, by_class: bool = False,
                    ablations: dict[str, dict] | None = None, budgets: dict[str, dict] | None = None,
                    validate: Callable[[object], None] | None = None):
    if kind not in KINDS:
        raise TypeError(f"method {name}: kind must be one of {KINDS}, got {kind!r}")

    def wrap(fn):
        METHODS[name] = MethodSpec(name, fn, config_class, summary, kind, by_class, dict(ablations or {}),
                                   dict(budgets or {}), validate)
        return fn
    return wrap


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


def make_config(spec: MethodSpec, overrides: dict | None = None):
    """The method's config with `overrides` (flat option names) applied and checked; unknown names are a
    ConfigError."""
    config = build_config(spec.config_class, dict(overrides or {}))
    if spec.validate is not None:
        spec.validate(config)
    return config


def fingerprint(method: str, ipc: int, config, seed: int, dataset: AVDataset, group: Group = Group()) -> str:
    """Identity of a run, stored in checkpoints so a resume never mixes two different runs (nor the
    processes of one: a multi-process run adds world size and rank; a single process's is unchanged)."""
    identity = {"method": method, "ipc": ipc, "seed": seed, "config": flat_dict(config), "dataset": dataset.checksum}
    if group.world_size > 1:
        identity.update(world_size=group.world_size, rank=group.rank)
    return json.dumps(identity, sort_keys=True)
