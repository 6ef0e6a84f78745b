"""The optimisation loop every synthesis method shares: SGD on the synthetic tensors,
a progress bar, a JSONL log of every loss term, and checkpoints that resume exactly.

A method supplies ``loss_terms(iteration, audio, frames) -> {name: scalar tensor}`` with a
``"total"`` entry. Because all per-iteration randomness is derived from (seed, iteration), a
run resumed from a checkpoint continues exactly as if it had never stopped. A method that
carries state across iterations (DAVDD's EMA prototypes) passes it as ``state``, a dict of
tensors it updates in place: the checkpoint saves it and a resume restores it, so such a run
resumes exactly too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from avdistill.errors import ConfigError
from avdistill.io import atomic_path

CHECKPOINT = "checkpoint.safetensors"
LOSS_LOG = "losses.jsonl"

LossTerms = Callable[[int, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def optimise_synthetic(audio: torch.Tensor, frames: torch.Tensor, loss_terms: LossTerms, *, iterations: int,
                       lr_audio: float, lr_frames: float, momentum: float, fingerprint: str,
                       workdir: Path | None = None, checkpoint_every: int = 50, progress: bool = True,
                       desc: str = "distill", state: dict[str, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the method's loss over the synthetic audio and frames; return the final tensors.

    `state` (optional): the method's tensors that change across iterations, checkpointed with the
    synthetic set and restored in place on resume.
    """
    state = state if state is not None else {}
    audio = audio.detach().clone().requires_grad_(True)
    frames = frames.detach().clone().requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": [audio], "lr": lr_audio}, {"params": [frames], "lr": lr_frames}],
                                momentum=momentum)
    start = 0
    log_path = workdir / LOSS_LOG if workdir else None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        start = _resume(workdir, fingerprint, audio, frames, optimizer, state)
        _truncate_log(log_path, start)
    log = open(log_path, "a") if log_path else None
    try:
        bar = tqdm(range(start, iterations), initial=start, total=iterations, desc=desc, disable=not progress,
                   dynamic_ncols=True)
        for iteration in bar:
            optimizer.zero_grad(set_to_none=True)
            terms = loss_terms(iteration, audio, frames)
            terms["total"].backward()
            optimizer.step()
            values = {k: float(v.detach()) for k, v in terms.items()}
            bar.set_postfix(loss=f"{values['total']:.4g}", refresh=False)
            if log:
                log.write(json.dumps({"iteration": iteration, **values}) + "\n")
            done = iteration + 1
            if workdir is not None and (done % checkpoint_every == 0) and done < iterations:
                log.flush()
                _save_checkpoint(workdir, fingerprint, done, audio, frames, optimizer, state)
    finally:
        if log:
            log.close()
    return audio.detach(), frames.detach()


def finish(workdir: Path | None) -> None:
    """Drop the checkpoint once the final output is safely written."""
    if workdir is not None:
        (workdir / CHECKPOINT).unlink(missing_ok=True)


def _save_checkpoint(workdir: Path, fingerprint: str, done: int, audio, frames, optimizer, state) -> None:
    tensors = {"audio": audio.detach().cpu(), "frames": frames.detach().cpu()}
    tensors.update({f"state.{name}": value.detach().cpu().contiguous() for name, value in state.items()})
    for name, param in (("audio", audio), ("frames", frames)):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{name}"] = buffer.cpu()
    with atomic_path(workdir / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint, "iterations_done": str(done)})


def _resume(workdir: Path, fingerprint: str, audio, frames, optimizer, state) -> int:
    path = workdir / CHECKPOINT
    if not path.exists():
        return 0
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path} was written by a run with other settings; use another output folder "
                          "or delete the checkpoint to start over")
    tensors = load_file(str(path))
    with torch.no_grad():
        audio.copy_(tensors["audio"])
        frames.copy_(tensors["frames"])
        for name, value in state.items():
            if f"state.{name}" not in tensors:
                raise ConfigError(f"{path} holds no method state {name!r}; delete the checkpoint to start over")
            value.copy_(tensors[f"state.{name}"])
    for name, param in (("audio", audio), ("frames", frames)):
        if f"momentum.{name}" in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[f"momentum.{name}"].to(param.device)
    return int(meta["iterations_done"])


def _truncate_log(log_path: Path, keep: int) -> None:
    """Keep the first `keep` iterations of the loss log (a killed run may have logged past its checkpoint)."""
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["iteration"] < keep]
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(kept))
