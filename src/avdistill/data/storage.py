"""The prepared-dataset file: one safetensors file, JSON metadata in its header.

safetensors holds raw little-endian arrays behind a JSON header: no pickle, so loading an
untrusted file cannot run code, and every tensor can be memory-mapped in place. Tensor names:
``train.audio``, ``train.frames``, ``train.labels`` and the same for ``test``. The header's
``__metadata__["avdistill"]`` holds the dataset name, class names, preprocessing and free-form
info (source, licence, manifest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.validate import check_same_layout, check_split
from avdistill.errors import DataError
from avdistill.io import atomic_path, sha256_file

FORMAT = "avdistill.dataset/1"
_SPLITS = ("train", "test")
_KEYS = ("audio", "frames", "labels")
_NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32, "U8": np.uint8, "I64": np.int64, "I32": np.int32}


def save_dataset(dataset: AVDataset, path: str | os.PathLike) -> Path:
    """Atomically write `dataset` to `path` (a .safetensors file)."""
    tensors = {}
    for split_name in _SPLITS:
        split = getattr(dataset, split_name)
        for key in _KEYS:
            tensors[f"{split_name}.{key}"] = getattr(split, key).contiguous()
    header = {
        "format": FORMAT,
        "name": dataset.name,
        "classes": list(dataset.classes),
        "preprocessing": dataset.preprocessing.to_dict(),
        "info": dataset.info,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"avdistill": json.dumps(header)})
    return Path(path)


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensor table, avdistill metadata) of a safetensors file, without reading the data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size <= 0 or size > min(path.stat().st_size - 8, 100 << 20):
                raise DataError(path, "not a safetensors file (bad header length)")
            table = json.loads(f.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read safetensors header: {exc}") from None
    if not isinstance(table, dict):
        raise DataError(path, "not a safetensors file (header is not a JSON object)")
    meta = table.pop("__metadata__", None) or {}
    for name, entry in table.items():
        if not _well_formed(entry):
            raise DataError(path, f"damaged safetensors header: bad entry for tensor {name!r}")
    try:
        header = json.loads(meta["avdistill"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise DataError(path, "safetensors file without avdistill metadata (not written by avdistill?)") from None
    return table, header


def _well_formed(entry) -> bool:
    """A tensor entry of a safetensors header: dtype, shape, and two ordered data offsets."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    ints = lambda xs: isinstance(xs, list) and all(isinstance(x, int) and x >= 0 for x in xs)  # noqa: E731
    return ints(shape) and ints(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]


def read_avdistill_header(path: Path, expected_format: str, what: str) -> dict:
    """The avdistill metadata of `path`, after checking the file exists and holds `expected_format`."""
    if not path.is_file():
        raise DataError(path, "no such file")
    _, header = read_header(path)
    if header.get("format") != expected_format:
        raise DataError(path, f"not {what} (format {header.get('format')!r}, expected {expected_format!r})")
    return header


def load_tensors(path: str | os.PathLike, names: tuple[str, ...], mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read the named tensors of a safetensors file; with `mmap`, map them read-only instead of copying."""
    path = Path(path)
    table, _ = read_header(path)
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(path, f"missing tensors: {', '.join(missing)}")
    if mmap:
        return {n: _memmap(path, table, n) for n in names}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {n: f.get_tensor(n) for n in names}
    except (SafetensorError, OSError) as exc:
        raise DataError(path, f"corrupt safetensors file: {exc}") from None


def _memmap(path: Path, table: dict, name: str) -> torch.Tensor:
    entry = table[name]
    dtype = _NUMPY_DTYPES.get(entry.get("dtype"))
    if dtype is None:
        raise DataError(path, f"tensor {name} has unsupported dtype {entry.get('dtype')}")
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
    start, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    if end - start != int(np.prod(shape)) * np.dtype(dtype).itemsize or 8 + header_size + end > path.stat().st_size:
        raise DataError(path, f"tensor {name} is truncated or its offsets are wrong")
    array = np.memmap(path, dtype=dtype, mode="r", offset=8 + header_size + start, shape=shape)
    import warnings

    with warnings.catch_warnings():  # torch warns that the mapping is read-only; we never write to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def load_prepared(path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> AVDataset:
    """Load a prepared dataset file. With `mmap`, tensors stay on disk until touched."""
    path = Path(path)
    header = read_avdistill_header(path, FORMAT, "an avdistill dataset")
    names = tuple(f"{s}.{k}" for s in _SPLITS for k in _KEYS)
    tensors = load_tensors(path, names, mmap=mmap)
    splits = {s: AVSplit(*(tensors[f"{s}.{k}"] for k in _KEYS)) for s in _SPLITS}
    try:
        classes = [str(c) for c in header["classes"]]
        prep = Preprocessing.from_dict(header["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed avdistill metadata: {exc}") from None
    if verify:
        for s in _SPLITS:
            check_split(splits[s], path, s, num_classes=len(classes))
        check_same_layout(splits["train"], splits["test"], path)
    return AVDataset(
        name=header.get("name", path.stem),
        classes=classes,
        train=splits["train"],
        test=splits["test"],
        preprocessing=prep,
        info=header.get("info", {}),
        source_path=str(path),
        checksum=sha256_file(path),
    )
