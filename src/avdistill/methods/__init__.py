"""Distillation methods behind one interface: ``distill(dataset, method, ipc, seed, **options)``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError, DataError
from avdistill.io import check_output_dir, versions
from avdistill.methods import avdd, dm, herding, kcenter, random  # noqa: F401  (registers the methods)
from avdistill.methods import davdd, mtt  # noqa: F401  (registers DAVDD and MTT)
from avdistill.methods.base import METHODS, RunContext, fingerprint, get_method, make_config
from avdistill.methods.loop import finish
from avdistill.synthetic import SyntheticSet

SYNTHETIC_FILE = "synthetic.safetensors"


def distill(dataset: AVDataset, method: str = "dm", ipc: int = 10, seed: int = 0, out: str | Path | None = None,
            device: str = "cpu", progress: bool = True, **options) -> SyntheticSet:
    """Distil `dataset` into `ipc` pairs per class with `method`.

    With `out` (a folder), the run checkpoints there, logs every loss term to ``losses.jsonl``,
    resumes if interrupted, and writes ``synthetic.safetensors`` + ``synthetic.json``.
    """
    if not isinstance(ipc, int) or isinstance(ipc, bool):
        raise ConfigError(f"ipc must be a whole number, got {ipc!r}")
    if ipc < 1:
        raise ConfigError(f"ipc must be >= 1, got {ipc}")
    spec = get_method(method)
    config = make_config(spec, options)
    counts = torch.bincount(dataset.train.labels, minlength=dataset.num_classes)
    if (counts == 0).any():  # every method needs real pairs of every class (noise init would hide it)
        empty = ", ".join(repr(dataset.classes[c]) for c in torch.nonzero(counts == 0).flatten().tolist())
        raise DataError(dataset.source_path or dataset.name, f"classes without training pairs: {empty}")
    workdir = check_output_dir(out) if out is not None else None
    run = RunContext(seed=seed, device=device, workdir=workdir, progress=progress,
                     fingerprint=fingerprint(method, ipc, config, seed, dataset))
    start = time.perf_counter()
    audio, frames, labels = spec.run(dataset, ipc, config, run)
    meta = {
        "method": method,
        "ipc": ipc,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "device": device,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "source": {"name": dataset.name, "path": dataset.source_path, "sha256": dataset.checksum},
        "versions": versions(),
    }
    syn = SyntheticSet(audio, frames, labels, list(dataset.classes), dataset.preprocessing, meta,
                       factor=getattr(config, "factor", 1))
    if workdir is not None:
        syn.save(workdir / SYNTHETIC_FILE)
        finish(workdir)
    return syn


__all__ = ["METHODS", "distill", "get_method"]
