"""Watching a distillation from outside the method: a wall-time limit, the expected wall time,
and checks every few iterations (``avdistill tune`` evaluates the set and prunes a lagging trial).

The shared loop (:mod:`avdistill.methods.loop`) calls :meth:`Watch.after` after every iteration,
so every method that uses the loop gets these without knowing of them. A time limit stops the
run only at a checkpoint: the last one that the measured pace says comes before the limit, so
the stopped run can be continued later from there, and ``synthetic.json`` records the stop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from avdistill.errors import ConfigError

Check = Callable[[int, torch.Tensor, torch.Tensor], None]


class Watch:
    """`time_limit`: seconds from the Watch's creation (the start of the run); `announce`: print the
    expected wall time after the first iterations; `check(done, audio, frames)` runs every `check_every`
    iterations before the last (it may raise to end the run, e.g. optuna.TrialPruned)."""

    PACE_ITERATIONS = 5  # iterations the expected wall time is measured over (after the first, which warms up)

    def __init__(self, time_limit: float | None = None, announce: bool = False, check: Check | None = None,
                 check_every: int = 0):
        self.started = time.perf_counter()
        self.time_limit = time_limit
        self.announce = announce
        self.check = check
        self.check_every = check_every
        self.stopped_at: int | None = None  # the iteration a time limit stopped the run after
        self._first: tuple[int, float] | None = None  # (iterations done, time) after the run's first iteration

    def after(self, done: int, total: int, checkpoint_every: int, audio: torch.Tensor, frames: torch.Tensor) -> bool:
        """Called by the loop after iteration `done` - 1; True: stop now (a checkpoint is due at `done`)."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (done, now)
        elif self.announce and done - self._first[0] == self.PACE_ITERATIONS and done < total:
            pace = (now - self._first[1]) / self.PACE_ITERATIONS
            expected = now - self.started + pace * (total - done)
            tqdm.write(f"expected wall time: {_duration(expected)} ({total} iterations at {pace:.2f} s each, "
                       f"measured over iterations {self._first[0] + 1}-{done})", file=sys.stderr)
        if self.check is not None and self.check_every and done % self.check_every == 0 and done < total:
            self.check(done, audio, frames)
        if self.time_limit is None or done % checkpoint_every or done >= total:
            return False
        first_done, first_time = self._first
        pace = (now - first_time) / (done - first_done) if done > first_done else (now - self.started) / done
        next_checkpoint = min(done + checkpoint_every, total)
        if now - self.started + pace * (next_checkpoint - done) <= self.time_limit:
            return False
        self.stopped_at = done
        return True

    def record(self) -> dict | None:
        """What synthetic.json records about a stop by the time limit (None: the run went to its end)."""
        if self.stopped_at is None:
            return None
        return {"reason": "time budget", "time_budget_seconds": self.time_limit, "iterations_done": self.stopped_at}


def parse_duration(text: str) -> float:
    """'90s', '20m', '1.5h' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    try:
        seconds = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"a duration must be a positive number with s, m or h, e.g. 20m; got {text!r}")
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"
