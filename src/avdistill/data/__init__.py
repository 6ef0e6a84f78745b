"""Data: the paired AV dataset, its file formats, and the embedded default dataset."""

from __future__ import annotations

import os
from pathlib import Path

from avdistill.data.avdd import load_avdd
from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.embedded import NAME as EMBEDDED_NAME
from avdistill.data.embedded import NAMES as EMBEDDED_NAMES
from avdistill.data.embedded import load_embedded
from avdistill.data.storage import load_prepared, save_dataset


def load_dataset(source: str | os.PathLike = EMBEDDED_NAME, mmap: bool = False, verify: bool = True) -> AVDataset:
    """Load a dataset by name or path: ``"av-digits"``, ``"av-digits-hard"`` (embedded, built in memory),
    a prepared ``.safetensors`` or an AVDD ``.pt``.

    `verify` (prepared files): check checksums and contents, one pass over the data; see :func:`load_prepared`.
    """
    if str(source) in EMBEDDED_NAMES:
        return load_embedded(str(source), verify=verify)
    path = Path(source)
    if path.suffix == ".pt":
        return load_avdd(path)
    return load_prepared(path, mmap=mmap, verify=verify)


__all__ = ["AVDataset", "AVSplit", "Preprocessing", "load_dataset", "load_avdd", "load_prepared", "save_dataset"]
