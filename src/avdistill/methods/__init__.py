"""Distillation methods behind one interface: ``distill(dataset, method, ipc, seed, **options)``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from avdistill import distributed
from avdistill.cache import cache_ledger, code_digest
from avdistill.config import flat_dict
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError, DataError
from avdistill.files import check_output_dir, versions
from avdistill.memory import peak_memory
from avdistill.methods import avdd, avmmd, davdd, dm, herding, kcenter, mtt, random  # noqa: F401  (registers the methods)
from avdistill.methods.base import METHODS, MethodSpec, RunContext, fingerprint, get_method, make_config
from avdistill.methods.budgets import budget_options
from avdistill.methods.loop import finish
from avdistill.methods.synthesis import starting_set
from avdistill.methods.watch import Watch
from avdistill.run_folder import RunFolder
from avdistill.synthetic import SyntheticSet


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
    config = make_config(spec, {**budget_options(spec, budget), **options})
    counts = torch.bincount(dataset.train.labels, minlength=dataset.num_classes)
    if (counts == 0).any():  # every method needs real pairs of every class (noise init would hide it)
        empty = ", ".join(repr(dataset.classes[c]) for c in torch.nonzero(counts == 0).flatten().tolist())
        raise DataError(dataset.source_path or dataset.name, f"classes without training pairs: {empty}")
    folder = RunFolder(check_output_dir(out)) if out is not None else None
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
    run = RunContext(seed=seed, device=group.device, folder=folder, progress=progress and group.leader,
                     fingerprint=fingerprint(method, ipc, config, seed, dataset, group), group=group, watch=watch)
    # A synthesis method runs with the IDM factor it can use at this IPC (factor_for: --factor, shrunk where
    # a class holds too few real pairs to pack); synthetic.json keeps the options as given and the factor used.
    factor = config.factor_for(ipc, dataset) if spec.kind == "synthesis" else getattr(config, "factor", 1)
    if spec.kind == "synthesis" and factor != config.factor and config.factor > 1 and run.progress:
        tqdm.write(f"{method}: factor {config.factor} at IPC {ipc} needs {ipc * config.factor ** 2} training pairs "
                   f"per class, the smallest class has fewer: using factor {factor}")
    run_config = dataclasses.replace(config, factor=factor) if spec.kind == "synthesis" else config
    start = time.perf_counter()
    with cache_ledger() as ledger, peak_memory(group.device) as memory:
        audio, frames, labels = spec.run(dataset, ipc, run_config, run)
    meta = {
        "method": method,
        "ipc": ipc,
        "seed": seed,
        "config": flat_dict(config),
        "budget": budget,
        "device": group.device,
        "world_size": group.world_size,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "cache_seconds": ledger.summary(),  # filled in this run / reused from earlier ones, per cache kind
        "peak_memory_mib": memory,
        "source": {"name": dataset.name, "path": dataset.source_path, "sha256": dataset.checksum},
        "versions": versions(),
        "code_sha256": code_digest("."),
    }
    stopped = watch.record() if watch is not None else None
    if stopped:
        meta["stopped"] = stopped
    syn = SyntheticSet(audio, frames, labels, list(dataset.classes), dataset.preprocessing, meta, factor=factor)
    if folder is not None:
        if group.leader:
            syn.save(folder.synthetic)
        group.barrier()  # every process keeps its checkpoint until the set is safely written
        if stopped:  # the checkpoint stays: a rerun with the same --out continues from it
            return syn
        finish(folder, group)
    return syn


def initial_set(dataset: AVDataset, spec: MethodSpec, ipc: int, config, seed: int) -> tuple[SyntheticSet, str]:
    """The set a run of `spec` with `config` started from, and a sentence saying what it is: a synthesis method's
    starting set (same seed, init, IDM factor and herding settings), else the random coreset of the seed and IPC."""
    if spec.kind == "synthesis":
        factor = config.factor_for(ipc, dataset)
        audio, frames, labels = starting_set(dataset, ipc, dataclasses.replace(config, factor=factor), seed)
        what = f"the method's initialisation (init={config.init}, factor {factor}, seed {seed})"
    else:
        random_set = distill(dataset, "random", ipc, seed, progress=False)
        audio, frames, labels, factor = random_set.audio, random_set.frames, random_set.labels, 1
        what = f"the random coreset of seed {seed}"
    return SyntheticSet(audio, frames, labels, list(dataset.classes), dataset.preprocessing,
                        {"what": what, "versions": versions()}, factor=factor), what


__all__ = ["METHODS", "distill", "get_method", "initial_set", "make_config"]
