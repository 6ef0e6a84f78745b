"""The grid's cell cache: one JSON file per evaluated cell, reused while its settings and the code
that computed it are unchanged.

A cell's record holds the `settings` its numbers depend on, stamped with the avdistill version
and the digest of the package's source (:func:`avdistill.cache.stamp`): a cell computed with other
settings, or by other code, is computed again and replaced, as is an unreadable file. Without a
folder (``evaluate`` of a few files) every cell is computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from avdistill.cache import stamp
from avdistill.files import write_json

CODE = (".",)  # a cell's numbers may depend on any of the package's code


def as_json(obj):
    """`obj` as it reads back from JSON (tuples become lists), for comparing settings."""
    return json.loads(json.dumps(obj))


def cached_cell(path: Path | None, settings: dict, compute: Callable[[], dict]) -> dict:
    """The record stored at `path` if it was computed with exactly `settings` by this code, else
    ``{"settings": ..., **compute()}``, stored at `path` (None: not stored)."""
    settings = as_json({**settings, **stamp(CODE)})
    if path is not None and path.exists():
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            tqdm.write(f"recomputing {path}: unreadable ({exc})")
        else:
            if isinstance(record, dict) and record.get("settings") == settings:
                return record
    record = {"settings": settings, **compute()}
    if path is not None:
        write_json(path, record)
    return record
