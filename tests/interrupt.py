"""Simulated Ctrl-C for resume tests, shared by the pytest tests and the torchrun worker."""

from __future__ import annotations

import avdistill.methods.loop as loop


def interrupt_after_checkpoints(n: int, patch=setattr) -> None:
    """Make the next run die (KeyboardInterrupt) right after writing its n-th checkpoint.

    `patch(obj, name, value)` installs and restores the hook: pytest's ``monkeypatch.setattr`` (also undone at
    teardown) in tests, plain ``setattr`` in a torchrun worker.
    """
    real_save = loop._save_checkpoint
    calls = {"n": 0}

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            patch(loop, "_save_checkpoint", real_save)
            raise KeyboardInterrupt

    patch(loop, "_save_checkpoint", save_then_die)
