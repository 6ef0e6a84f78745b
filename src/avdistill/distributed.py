"""The process group of a multi-process run (``torchrun -m avdistill distill ...``): which
classes each process distils, and the few collectives that join the processes.

Why splitting by class is exact. The losses of the DM family (DM, AVDD, DAVDD) are sums over
classes, and a class's synthetic samples enter only that class's terms: per-class means of
per-sample embeddings (the encoders normalise per sample, GroupNorm, or are frozen in eval
mode), DAVDD's per-class EMA prototypes and per-class pair alignment. Every per-iteration draw
is a pure function of (seed, iteration): the encoders, the DSA parameters (siamese: one draw per
call, whatever the batch), the real batch (:class:`~avdistill.methods.matching.RealSampler`
draws every class's permutation in class order and keeps its process's classes). SGD with
momentum updates each element from its own gradient. So a process that optimises only its
classes' rows, against only its classes' terms, computes the same rows as one process doing
all classes, up to the order of float summation (and batch-size-dependent kernel choices).

What does not split: the initial set (herding's feature networks included) and DAVDD's bank are
computed alike by every process (each keeps its classes' rows of the set); methods that are not a per-class sum
(MTT matches training trajectories on the whole set; the coresets are cheap and their cost is
feature training on the whole set) and random encoders with batch norm (whose batch statistics
mix the classes) refuse to run on more than one process, rather than repeat the work in each.

Partition: contiguous, balanced blocks of classes (sizes differ by at most one), so the full set
is the processes' rows concatenated in rank order, which is class order. Per-class work is about
equal (the same IPC and real pairs per class), so balancing by class count balances the work.
Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) the group is one process and no
process group is created.
"""

from __future__ import annotations

import atexit
import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from avdistill.errors import AVDistillError, ConfigError

# A process that stops answering (rather than exiting: torchrun then stops the others at once)
# fails the others' next collective after this long instead of leaving them waiting forever. It
# must exceed the longest stretch without a collective: herding initialisation or DAVDD's bank
# training, which every process runs alike before the first one.
TIMEOUT = timedelta(minutes=30)


class ProcessGroupError(AVDistillError):
    """A collective failed: another process stopped (it reports its own error) or stopped answering."""


def world_size() -> int:
    """Processes in this run, from torchrun's environment (1 when not launched by torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank, from torchrun's environment (0 when not launched by torchrun)."""
    return _env_int("RANK", 0)


def class_partition(num_classes: int, processes: int) -> list[list[int]]:
    """Contiguous balanced blocks: process r distils classes [r*C//W, (r+1)*C//W)."""
    if processes > num_classes:
        raise ConfigError(f"{processes} processes for {num_classes} classes: each process needs at least one "
                          f"class; launch at most {num_classes}")
    return [list(range(r * num_classes // processes, (r + 1) * num_classes // processes)) for r in range(processes)]


@dataclass(frozen=True)
class Group:
    """This process's place in the run; the defaults are a single process (every collective a no-op)."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def leader(self) -> bool:
        """Rank 0 writes the outputs, the loss log and the progress bar."""
        return self.rank == 0

    def classes(self, num_classes: int) -> list[int]:
        """The classes this process distils, in class order."""
        return class_partition(num_classes, self.world_size)[self.rank]

    def sum_terms(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The loss terms summed over the processes (the whole set's loss), as floats, on every process alike.

        Every process calls it at the same iteration with the same names, so a check on the sum
        (the divergence check) fires on all of them together.
        """
        names = list(terms)
        values = torch.stack([terms[name].detach().double().reshape(()) for name in names])
        if self.world_size > 1:
            values = values.to(self.device)
            _collective(dist.all_reduce, values)
        return dict(zip(names, values.tolist()))

    def agree(self, value: int, what: str) -> int:
        """`value`, checked to be the same on every process (a ConfigError on all of them otherwise)."""
        if self.world_size == 1:
            return value
        low = torch.tensor([value], device=self.device)
        high = low.clone()
        _collective(dist.all_reduce, low, op=dist.ReduceOp.MIN)
        _collective(dist.all_reduce, high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise ConfigError(f"the processes disagree on {what} ({low.item()} to {high.item()})")
        return value

    def gather_classes(self, x: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The whole set from each process's rows (its classes, the same rows per class), in class order."""
        if self.world_size == 1:
            return x
        parts = class_partition(num_classes, self.world_size)
        per_class = len(x) // len(parts[self.rank])
        padded = x.new_zeros(max(map(len, parts)) * per_class, *x.shape[1:], device=self.device)
        padded[:len(x)] = x.detach()
        gathered = [torch.empty_like(padded) for _ in parts]
        _collective(dist.all_gather, gathered, padded)
        return torch.cat([rows[:len(part) * per_class] for rows, part in zip(gathered, parts)]).to(x.device)

    def barrier(self) -> None:
        if self.world_size > 1:
            _collective(dist.barrier)


def join(device: str = "cpu") -> Group:
    """This process's :class:`Group`: a single process without torchrun; under torchrun, its process group
    (gloo on CPU, NCCL on CUDA with each process on cuda:LOCAL_RANK), joined on first use and left at exit.

    Joined once per process: a gloo group destroyed and created again in the same process can hang
    in its rendezvous (seen with torch 2.13), so consecutive distill() calls share one. A group the
    caller initialised itself is used as it is.
    """
    size = world_size()
    if size == 1:
        return Group(device=device)
    me, local = rank(), _env_int("LOCAL_RANK", 0)
    kind = torch.device(device)
    if kind.type == "cuda":
        if kind.index is not None:
            raise ConfigError(f"--device {device}: under torchrun give --device cuda; process K uses cuda:LOCAL_RANK")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local}, but only {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(local)
        backend, device = "nccl", f"cuda:{local}"
    elif kind.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"--device {device}: multi-process runs use cpu (gloo) or cuda (NCCL)")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
        atexit.register(_leave)
    elif dist.get_world_size() != size or dist.get_rank() != me:
        raise ConfigError("the existing process group does not match torchrun's WORLD_SIZE/RANK")
    elif backend not in str(dist.get_backend()):
        raise ConfigError(f"--device {device} needs the {backend} backend, but this process joined a "
                          f"{dist.get_backend()} group")
    return Group(rank=me, world_size=size, device=device)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective(fn, *args, **kwargs) -> None:
    """Run a collective; its failure (a peer gone, a timeout) becomes one line instead of a backend traceback."""
    try:
        fn(*args, **kwargs)
    except (RuntimeError, dist.DistError) as exc:
        reason = re.sub(r"^\[[^]]*\]\s*", "", (str(exc).splitlines() or [type(exc).__name__])[0])[:160]
        raise ProcessGroupError(f"lost contact with the other processes, so this one stops too (the failing one "
                                f"reports its own error): {reason}") from None


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not a whole number") from None
