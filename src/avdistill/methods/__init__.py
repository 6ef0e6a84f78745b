"""Distillation methods behind one interface: ``distill(dataset, method, ipc, seed, **options)``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from avdistill import distributed
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError, DataError
from avdistill.io import check_output_dir, versions
from avdistill.methods import avdd, dm, herding, kcenter, random  # noqa: F401  (registers the methods)
from avdistill.methods import davdd, mtt  # noqa: F401  (registers DAVDD and MTT)
from avdistill.methods.base import METHODS, RunContext, fingerprint, get_method, make_config
from avdistill.methods.budgets import budget_options
from avdistill.methods.loop import finish
from avdistill.methods.watch import Watch
from avdistill.synthetic import SyntheticSet

SYNTHETIC_FILE = "synthetic.safetensors"


def distill(dataset: AVDataset, method: str = "dm", ipc: int = 10, seed: int = 0, out: str | Path | None = None,
            device: str = "cpu", progress: bool = True, budget: str | None = None, watch: Watch | None = None,
            **options) -> SyntheticSet:
    """Distil `dataset` into `ipc` pairs per class with `method`.

    `budget` ('paper' or 'cpu', :mod:`avdistill.methods.budgets`) sets the method's iterations and
    batch sizes (None: the config's defaults); `options` override it. `watch` (:mod:`avdistill.methods.watch`)
    sees the optimisation loop: a time limit there stops the run at a checkpoint and the set records it.

    With `out` (a folder), the run checkpoints there, logs every loss term to ``losses.jsonl``,
    resumes if interrupted, and writes ``synthetic.safetensors`` + ``synthetic.json``.

    Launched by torchrun (``torchrun --nproc_per_node=N -m avdistill distill ...``), the processes
    split the classes (methods registered ``by_class``; see :mod:`avdistill.distributed`), each
    checkpoints in ``out/rank-K/``, and every process returns the whole set; rank 0 writes it.
    """
    if not isinstance(ipc, int) or isinstance(ipc, bool):
        raise ConfigError(f"ipc must be a whole number, got {ipc!r}")
    if ipc < 1:
        raise ConfigError(f"ipc must be >= 1, got {ipc}")
    spec = get_method(method)
    config = make_config(spec, {**budget_options(spec.config_class, budget), **options})
    counts = torch.bincount(dataset.train.labels, minlength=dataset.num_classes)
    if (counts == 0).any():  # every method needs real pairs of every class (noise init would hide it)
        empty = ", ".join(repr(dataset.classes[c]) for c in torch.nonzero(counts == 0).flatten().tolist())
        raise DataError(dataset.source_path or dataset.name, f"classes without training pairs: {empty}")
    workdir = check_output_dir(out) if out is not None else None
    processes = distributed.world_size()
    if processes > 1 and watch is not None and watch.time_limit is not None:
        raise ConfigError("a time budget cannot stop the processes of a torchrun run alike; run without it")
    if processes > 1:  # checked before the processes join, so all of them stop alike
        if not spec.by_class:
            splits = ", ".join(sorted(name for name, s in METHODS.items() if s.by_class))
            raise ConfigError(f"method {method!r} cannot be split across processes (only {splits} split by class); "
                              "run it as one process, without torchrun")
        distributed.class_partition(dataset.num_classes, processes)  # refuses more processes than classes
    group = distributed.join(device)
    run = RunContext(seed=seed, device=group.device, workdir=workdir, progress=progress and group.leader,
                     fingerprint=fingerprint(method, ipc, config, seed, dataset, group), group=group, watch=watch)
    start = time.perf_counter()
    audio, frames, labels = spec.run(dataset, ipc, config, run)
    meta = {
        "method": method,
        "ipc": ipc,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "budget": budget,
        "device": group.device,
        "world_size": group.world_size,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "source": {"name": dataset.name, "path": dataset.source_path, "sha256": dataset.checksum},
        "versions": versions(),
    }
    stopped = watch.record() if watch is not None else None
    if stopped:
        meta["stopped"] = stopped
    syn = SyntheticSet(audio, frames, labels, list(dataset.classes), dataset.preprocessing, meta,
                       factor=getattr(config, "factor", 1))
    if workdir is not None:
        if group.leader:
            syn.save(workdir / SYNTHETIC_FILE)
        group.barrier()  # every process keeps its checkpoint until the set is safely written
        if stopped:  # the checkpoint stays: a rerun with the same --out continues from it
            return syn
        finish(group.rank_dir(workdir))
        if group.world_size > 1:
            with contextlib.suppress(OSError):  # e.g. a temporary file a killed save left behind
                group.rank_dir(workdir).rmdir()
    return syn


__all__ = ["METHODS", "distill", "get_method"]
