"""The optimisation loop every synthesis method shares: SGD on the synthetic tensors,
a progress bar, a JSONL log of every loss term, and checkpoints that resume exactly.

A method supplies ``loss_terms(iteration, audio, frames) -> {name: scalar tensor}`` with a
``"total"`` entry, and may hand the loop further learnable tensors of its own (``extra``, e.g.
MTT's step size), each with its own learning rate: the same optimiser updates them in place, and
the checkpoints store and restore them (and their momentum) exactly like the audio and frames.
A method may split each iteration into `parts` optimiser steps (AVDD's per-class update, see
docs/METHODS.md): the loop then calls ``loss_terms(iteration, audio, frames, part)`` for part
0..parts-1 and steps after each, all with ONE optimiser (one momentum buffer over the whole
tensors), and logs the terms summed over the parts. With ``accumulate`` it steps once, after the
last part, on the gradients of all parts summed: the step of a loss that is a sum over the parts
(AV-MMD's classes), with only one part's graph in memory at a time. A method that carries state across
iterations (DAVDD's EMA prototypes) passes it as ``state``, a dict of tensors it updates in place: the checkpoint saves it and a resume restores it. Because
all per-iteration randomness is derived from (seed, iteration), a run resumed from a checkpoint
continues exactly as if it had never stopped.

In a multi-process run (``group``, :mod:`avdistill.distributed`) each process optimises its
classes' rows and keeps its own checkpoint in ``rank-K/`` of the run folder; the logged terms are the sums
over the processes (the whole set's loss), and rank 0 alone writes the log and the progress bar.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from avdistill.data.storage import tensor_digests, verify_digests
from avdistill.distributed import Group
from avdistill.errors import ConfigError, DataError
from avdistill.files import atomic_path
from avdistill.methods.watch import Watch
from avdistill.run_folder import RunFolder

LossTerms = Callable[[int, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def optimise_synthetic(audio: torch.Tensor, frames: torch.Tensor, loss_terms: LossTerms, *, iterations: int,
                       lr_audio: float, lr_frames: float, momentum: float, fingerprint: str,
                       folder: RunFolder | None = None, checkpoint_every: int = 50, progress: bool = True,
                       desc: str = "distill", extra: dict[str, tuple[torch.Tensor, float]] | None = None,
                       state: dict[str, torch.Tensor] | None = None, parts: int = 1, accumulate: bool = False,
                       group: Group = Group(), watch: Watch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the method's loss over the synthetic audio and frames; return the final tensors.

    `extra` maps a name to (leaf tensor, learning rate): tensors the method's loss reads (through
    its closure) and the loop optimises in place alongside the synthetic set. `state` maps a name to
    a tensor the method changes across iterations (not optimised), checkpointed and restored in place.
    `parts` > 1: that many steps per iteration, ``loss_terms(iteration, audio, frames, part)`` each (module docstring);
    with `accumulate`, one step per iteration on the gradients of all parts, summed (module docstring).
    `watch` (:mod:`avdistill.methods.watch`) sees every iteration and may stop the run at a checkpoint.
    """
    audio = audio.detach().clone().requires_grad_(True)
    frames = frames.detach().clone().requires_grad_(True)
    extra = extra or {}
    for name, (tensor, _) in extra.items():
        if not tensor.is_leaf:
            raise ConfigError(f"extra learnable tensor {name!r} must be a leaf tensor")
        tensor.requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [audio], "lr": lr_audio}, {"params": [frames], "lr": lr_frames},
                                 *({"params": [tensor], "lr": lr} for tensor, lr in extra.values())],
                                momentum=momentum)
    learnable = {"audio": audio, "frames": frames, **{f"extra.{name}": t for name, (t, _) in extra.items()}}
    state = state or {}
    start = 0
    log_path = folder.losses if folder is not None and group.leader else None
    if folder is not None:
        checkpoint = folder.checkpoint(group.rank, group.world_size)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        start = group.agree(_resume(checkpoint, fingerprint, learnable, optimizer, state),
                            "the iteration to resume from (delete the rank-K checkpoints to start over)")
        if log_path:
            _truncate_log(log_path, start)
    log = open(log_path, "a") if log_path else None
    try:
        bar = tqdm(range(start, iterations), initial=start, total=iterations, desc=desc, disable=not progress,
                   dynamic_ncols=True)
        optimizer.zero_grad(set_to_none=True)
        for iteration in bar:
            values: dict[str, float] = {}
            pending: dict[str, torch.Tensor] = {}  # the terms of the parts since the last step
            for part in range(parts):
                terms = loss_terms(iteration, audio, frames) if parts == 1 else loss_terms(iteration, audio, frames, part)
                terms["total"].backward()
                for name, value in terms.items():
                    pending[name] = pending[name] + value.detach() if name in pending else value.detach()
                if accumulate and part < parts - 1:
                    continue
                for name, value in group.sum_terms(pending).items():
                    values[name] = values.get(name, 0.0) + value
                if not math.isfinite(values["total"]):
                    raise ConfigError(f"{desc}: the loss became {values['total']} at iteration "
                                      f"{iteration} (the optimisation diverged); lower the learning rates")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pending = {}
            bar.set_postfix(loss=f"{values['total']:.4g}", refresh=False)
            if log:
                log.write(json.dumps({"iteration": iteration, **values}) + "\n")
            done = iteration + 1
            stop = watch is not None and watch.after(done, iterations, checkpoint_every, audio.detach(), frames.detach())
            if folder is not None and (done % checkpoint_every == 0) and done < iterations:
                if log:
                    log.flush()
                _save_checkpoint(checkpoint, fingerprint, done, learnable, optimizer, state)
            if stop:
                break
    finally:
        if log:
            log.close()
    return audio.detach(), frames.detach()


def finish(folder: RunFolder, group: Group = Group()) -> None:
    """Drop this process's checkpoint (and its rank-K folder) once the final output is safely written."""
    checkpoint = folder.checkpoint(group.rank, group.world_size)
    checkpoint.unlink(missing_ok=True)
    if group.world_size > 1:
        with contextlib.suppress(OSError):  # e.g. a temporary file a killed save left behind
            checkpoint.parent.rmdir()


def _save_checkpoint(path: Path, fingerprint: str, done: int, learnable: dict[str, torch.Tensor],
                     optimizer, state: dict[str, torch.Tensor]) -> None:
    tensors = {name: param.detach().cpu() for name, param in learnable.items()}
    tensors.update({f"state.{name}": value.detach().cpu().contiguous() for name, value in state.items()})
    for name, param in learnable.items():
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{name}"] = buffer.cpu()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint, "iterations_done": str(done),
                                               "sha256": json.dumps(tensor_digests(tensors))})


def _resume(path: Path, fingerprint: str, learnable: dict[str, torch.Tensor], optimizer,
            state: dict[str, torch.Tensor]) -> int:
    if not path.exists():
        return 0
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "sha256" in meta:  # a bit flipped on disk must not silently change the resumed run
            verify_digests(path, json.loads(meta["sha256"]))
        tensors = load_file(str(path))
        done = int(meta["iterations_done"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise DataError(path, f"damaged checkpoint ({exc}); delete it to start over") from None
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path} was written by a run with other settings; use another output folder "
                          "or delete the checkpoint to start over")
    wanted = {**learnable, **{f"state.{name}": value for name, value in state.items()}}
    if any(name not in tensors or tensors[name].shape != value.shape for name, value in wanted.items()):
        raise DataError(path, "damaged checkpoint (its tensors differ from this run's); delete it to start over")
    with torch.no_grad():
        for name, value in wanted.items():
            value.copy_(tensors[name])
    for name, param in learnable.items():
        if f"momentum.{name}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{name}"].to(param.device)
    return done


def _truncate_log(log_path: Path, keep: int) -> None:
    """Keep the first `keep` iterations of the loss log (a killed run may have logged past its checkpoint)."""
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["iteration"] < keep]
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(kept))
