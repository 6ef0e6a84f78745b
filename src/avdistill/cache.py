"""The one tensor cache: values that are expensive to compute (real statistics, expert trajectories,
DAVDD banks, feature networks' features) stored once and reused by later runs.

An entry is a set of named tensors. Its key is the sha256 of everything its values depend on:
the `identity` the caller gives (dataset checksum, seed, settings), the avdistill version, and a
digest of the source files that compute it (:func:`code_digest`). So an entry written by other
code, or by another version, lives under another key: it is never found, and the values are
computed again; it is never reused. On disk an entry is one safetensors file under
``<root>/<kind>-<key>/``, written atomically with the sha256 of every tensor and the identity in
its header; loading checks both, and a damaged or foreign file is recomputed and replaced, never
trusted. A cache without a folder keeps its entries in memory for the life of the process (the
feature networks' features), and one that is switched off (no folder, not in memory; also every
dataset without a checksum, which has no identity to key on) computes every time.

Every entry records in its header how many seconds computing it took, and a :class:`CacheLedger`
(:func:`cache_ledger`) collects, per kind, the seconds spent filling entries during a run and the
recorded cost of the entries it reused: so a run's time can be stated without caches, whatever
an earlier run left in them (``bench``'s time columns).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from avdistill.data.storage import tensor_digests, verify_digests
from avdistill.errors import DataError
from avdistill.files import atomic_path
from avdistill.version import __version__

PACKAGE = Path(__file__).resolve().parent

Tensors = dict[str, torch.Tensor]

_MEMORY: dict[tuple[str, str], tuple[Tensors, dict]] = {}


@functools.cache
def code_digest(*sources: str) -> str:
    """sha256 of the named source files and folders of the package (paths relative to it, e.g. "models")."""
    digest = hashlib.sha256()
    for source in sorted(sources):
        path = PACKAGE / source
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"cache code digest: no source file {path}")
        for file in files:
            digest.update(file.relative_to(PACKAGE).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def stamp(code: tuple[str, ...]) -> dict:
    """What ties a cached value to the code that made it: the version and the digest of its sources."""
    return {"avdistill": __version__, "code": code_digest(*code)}


@dataclass
class CacheLedger:
    """Seconds per cache kind during a run: `filled`, spent computing entries (whether or not the cache
    is on); `reused`, what the entries loaded from the cache cost when they were computed."""

    filled: dict[str, float] = field(default_factory=dict)
    reused_entries: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _computed: set[tuple[str, str, str]] = field(default_factory=set)

    def fill(self, entry: tuple[str, str, str], seconds: float) -> None:
        self.filled[entry[0]] = self.filled.get(entry[0], 0.0) + seconds
        self._computed.add(entry)

    def reuse(self, entry: tuple[str, str, str], seconds: float) -> None:
        if entry not in self._computed:  # an entry this run filled and read back costs nothing more
            self.reused_entries[entry] = seconds

    @property
    def reused(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (kind, _, _), seconds in self.reused_entries.items():
            totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def summary(self) -> dict:
        return {"filled": {k: round(v, 3) for k, v in self.filled.items()},
                "reused": {k: round(v, 3) for k, v in self.reused.items()}}


_LEDGERS: list[CacheLedger] = []


@contextlib.contextmanager
def cache_ledger() -> Iterator[CacheLedger]:
    """Collect the cache seconds of everything run inside the block (see :class:`CacheLedger`)."""
    ledger = CacheLedger()
    _LEDGERS.append(ledger)
    try:
        yield ledger
    finally:
        _LEDGERS.remove(ledger)


class TensorCache:
    """Entries of one `kind` with one `identity`, computed by the source files `code` (see the module docstring)."""

    def __init__(self, kind: str, identity: dict, code: tuple[str, ...], root: Path | None = None,
                 memory: bool = False):
        self.identity = json.loads(json.dumps({"kind": kind, **stamp(code), **identity}, sort_keys=True))
        self.key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:24]
        self.kind = kind
        self.folder = Path(root) / f"{kind}-{self.key}" if root is not None else None
        self.memory = memory and root is None

    def path(self, name: str) -> Path | None:
        return self.folder / f"{name}.safetensors" if self.folder is not None else None

    def load(self, name: str) -> tuple[Tensors, dict] | None:
        """(tensors, info) of entry `name`, or None when absent, damaged or written under another identity."""
        if self.memory:
            cached = _MEMORY.get((self.key, name))
        else:
            cached = self._load_file(name)
        if cached is not None:
            for ledger in _LEDGERS:
                ledger.reuse((self.kind, self.key, name), float(cached[1].get("seconds", 0.0)))
        return cached

    def _load_file(self, name: str) -> tuple[Tensors, dict] | None:
        path = self.path(name)
        if path is None or not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if json.loads(meta["identity"]) != self.identity:
                return None
            verify_digests(path, json.loads(meta["sha256"]))
            return load_file(str(path)), json.loads(meta.get("info", "{}"))
        except (SafetensorError, OSError, KeyError, ValueError, DataError):
            return None

    def save(self, name: str, tensors: Tensors, info: dict | None = None, seconds: float = 0.0) -> None:
        """Store entry `name`, which took `seconds` to compute (atomically; a no-op when the cache is off)."""
        for ledger in _LEDGERS:
            ledger.fill((self.kind, self.key, name), seconds)
        info = {**(info or {}), "seconds": round(seconds, 3)}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        if self.memory:
            _MEMORY[(self.key, name)] = (tensors, info)
            return
        path = self.path(name)
        if path is None:
            return
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"identity": json.dumps(self.identity, sort_keys=True),
                                                  "sha256": json.dumps(tensor_digests(tensors)),
                                                  "info": json.dumps(info)})

    def get(self, name: str, compute: Callable[[], tuple[Tensors, dict]]) -> tuple[Tensors, dict]:
        """Entry `name`, computed by ``compute() -> (tensors, info)`` and stored when it is not cached."""
        cached = self.load(name)
        if cached is not None:
            return cached
        start = time.perf_counter()
        tensors, info = compute()
        self.save(name, tensors, info, time.perf_counter() - start)
        return tensors, info


def forget_memory() -> None:
    """Drop the in-memory entries (e.g. to time a computation that a cached entry would skip)."""
    _MEMORY.clear()
