"""The prepared-dataset file: one safetensors file, JSON metadata in its header.

safetensors holds raw little-endian arrays behind a JSON header: no pickle, so loading an
untrusted file cannot run code, and every tensor can be memory-mapped in place. Tensor names:
``train.audio``, ``train.frames``, ``train.labels``, the same for ``test``, and for ``val`` when
the dataset has a validation split (files without one load with ``val=None``). The header's
``__metadata__["avdistill"]`` holds the dataset name, class names, preprocessing and free-form
info (source, licence, manifest).

Checksums: the metadata's ``sha256`` maps every tensor name to the sha256 of its bytes as stored
(:func:`tensor_digests`); loading re-hashes each tensor's bytes in the file and refuses a
mismatch (:func:`verify_digests`), so a flipped bit is a DataError, not a silently different
dataset. That costs one read of the file (about 200 MB/s on a loaded 2-core machine; see
docs/RELIABILITY.md); ``verify=False`` skips it, e.g. for a large memory-mapped dataset already
checked once. Files written before checksums existed (no ``sha256`` entry) load as before,
checked for structure only.

Large datasets: :func:`save_dataset_streamed` writes the same file one chunk at a time, and
``load_prepared(path, mmap=True)`` maps the tensors copy-on-write (the command lines do).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.validate import check_finite, check_same_layout, check_split
from avdistill.errors import DataError
from avdistill.files import atomic_path, sha256_file

FORMAT = "avdistill.dataset/1"
_SPLITS = ("train", "test")  # always stored
_OPTIONAL_SPLITS = ("val",)  # stored when present
_KEYS = ("audio", "frames", "labels")
_NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32, "U8": np.uint8, "I64": np.int64, "I32": np.int32}
_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.uint8: "U8", torch.int64: "I64",
                       torch.int32: "I32"}
_DTYPE_ORDER = ("I64", "F32", "I32", "F16", "U8")  # how safetensors orders tensors: its dtype rank, descending


def save_dataset(dataset: AVDataset, path: str | os.PathLike) -> Path:
    """Atomically write `dataset` to `path` (a .safetensors file)."""
    tensors = {}
    for split_name in _SPLITS + _OPTIONAL_SPLITS:
        split = getattr(dataset, split_name)
        if split is None:
            continue
        for key in _KEYS:
            tensors[f"{split_name}.{key}"] = getattr(split, key).contiguous()
    header = _metadata(dataset.name, dataset.classes, dataset.preprocessing, dataset.info, tensor_digests(tensors))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"avdistill": json.dumps(header)})
    return Path(path)


def _metadata(name: str, classes, preprocessing: Preprocessing, info: dict, digests: dict[str, str]) -> dict:
    return {"format": FORMAT, "name": name, "classes": list(classes), "preprocessing": preprocessing.to_dict(),
            "info": info, "sha256": digests}


@dataclass(frozen=True)
class TensorStream:
    """A tensor given piece by piece: its dtype, its full shape, and consecutive slices along dim 0."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    chunks: Iterable[torch.Tensor]


def save_dataset_streamed(path: str | os.PathLike, name: str, classes, preprocessing: Preprocessing, info: dict,
                          tensors: dict[str, TensorStream]) -> Path:
    """Atomically write a prepared dataset too large to hold in memory, one chunk at a time.

    `tensors` maps each of the six names (``train.audio`` ...), and optionally the three ``val.*``
    names, to a :class:`TensorStream`; each
    stream's chunks are read once, in safetensors' tensor order. The file is the one
    :func:`save_dataset` would write for the same tensors, byte for byte: the header is written
    first with placeholder checksums (hex digests have a fixed length) and rewritten in place
    once the data, hashed on the way, is on disk.
    """
    has_val = any(n.startswith("val.") for n in tensors)
    splits = _SPLITS + (_OPTIONAL_SPLITS if has_val else ())
    names = [f"{s}.{k}" for s in splits for k in _KEYS]  # save_dataset's order, which its checksum table keeps
    if set(tensors) != set(names):
        raise DataError(path, f"a dataset has the tensors {', '.join(sorted(names))}; got {', '.join(sorted(tensors))}")
    codes = {n: _SAFETENSORS_DTYPES.get(t.dtype) for n, t in tensors.items()}
    if None in codes.values() or sys.byteorder != "little":
        raise DataError(path, f"streamed datasets hold {', '.join(map(str, _SAFETENSORS_DTYPES))} "
                              "on little-endian machines")
    order = sorted(tensors, key=lambda n: (_DTYPE_ORDER.index(codes[n]), n))  # safetensors' order
    table, offset = {}, 0
    for n in order:
        t = tensors[n]
        size = math.prod(t.shape) * t.dtype.itemsize
        table[n] = {"dtype": codes[n], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size

    def header_bytes(digests: dict[str, str]) -> bytes:
        meta = json.dumps(_metadata(name, classes, preprocessing, info, digests))
        raw = json.dumps({"__metadata__": {"avdistill": meta}, **table}, separators=(",", ":")).encode()
        return raw + b" " * (-len(raw) % 8)  # safetensors pads the header to a multiple of 8 bytes

    digests = {n: "0" * 64 for n in names}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        header = header_bytes(digests)
        f.write(len(header).to_bytes(8, "little") + header)
        for n in order:
            digests[n] = _write_chunks(f, path, n, tensors[n])
        final = header_bytes(digests)
        assert len(final) == len(header)  # the digests replaced placeholders of their own length
        f.seek(8)
        f.write(final)
    return Path(path)


def _write_chunks(f, path, name: str, stream: TensorStream) -> str:
    """Write one stream's chunks to `f`; the sha256 of the bytes written. DataError on chunks that do not fit."""
    digest, rows = hashlib.sha256(), 0
    for chunk in stream.chunks:
        if chunk.dtype != stream.dtype or tuple(chunk.shape[1:]) != tuple(stream.shape[1:]):
            raise DataError(path, f"{name}: chunk {chunk.dtype} {tuple(chunk.shape)} does not fit "
                                  f"{stream.dtype} {tuple(stream.shape)}")
        raw = chunk.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(raw)
        f.write(raw.data)
        rows += chunk.shape[0]
    if rows != stream.shape[0]:
        raise DataError(path, f"{name}: the chunks hold {rows} rows, the shape says {stream.shape[0]}")
    return digest.hexdigest()


def tensor_digests(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """sha256 of each tensor's bytes as safetensors stores them (C order, little-endian)."""
    if sys.byteorder != "little":
        raise RuntimeError("avdistill writes checksummed files on little-endian machines only")
    digests = {}
    for name, t in tensors.items():
        raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        digests[name] = hashlib.sha256(raw).hexdigest()
    return digests


def dataset_digest(dataset: AVDataset) -> str:
    """The identity of a dataset held in memory: sha256 over its name, classes, preprocessing and the
    digest of every tensor (for datasets built at load time, which have no file of their own)."""
    tensors = {f"{s}.{k}": getattr(getattr(dataset, s), k) for s in _SPLITS + _OPTIONAL_SPLITS
               if getattr(dataset, s) is not None for k in _KEYS}
    identity = {"name": dataset.name, "classes": list(dataset.classes),
                "preprocessing": dataset.preprocessing.to_dict(), "sha256": tensor_digests(tensors)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def verify_digests(path: str | os.PathLike, digests, chunk: int = 8 << 20) -> None:
    """DataError(path, 'checksum mismatch ...') unless every tensor's bytes in the file hash to `digests`."""
    path = Path(path)
    table, _ = read_table(path)
    if not isinstance(digests, dict) or set(digests) != set(table):
        raise DataError(path, f"checksum table does not match the tensors ({', '.join(sorted(table))})")
    with open(path, "rb") as f:
        data_start = 8 + int.from_bytes(f.read(8), "little")
        for name, entry in sorted(table.items(), key=lambda item: item[1]["data_offsets"][0]):
            start, end = entry["data_offsets"]
            f.seek(data_start + start)
            digest, left = hashlib.sha256(), end - start
            while left > 0:
                block = f.read(min(chunk, left))
                if not block:
                    raise DataError(path, f"tensor {name} is truncated")
                digest.update(block)
                left -= len(block)
            if digest.hexdigest() != digests[name]:
                raise DataError(path, f"checksum mismatch in tensor {name}: the file was damaged or modified "
                                      "after it was written")


def content_checksum(path: str | os.PathLike, header: dict) -> str:
    """The identity of a file's content (recorded in outputs, keys caches and checkpoints).

    Files with per-tensor checksums: the sha256 of their safetensors header, which pins every
    tensor's digest, so it costs no data read. Older files: the sha256 of the whole file.
    """
    if "sha256" not in header:
        return sha256_file(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(int.from_bytes(f.read(8), "little"))).hexdigest()


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensor table, avdistill metadata) of a safetensors file, without reading the data."""
    path = Path(path)
    table, meta = read_table(path)
    try:
        header = json.loads(meta["avdistill"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise DataError(path, "safetensors file without avdistill metadata (not written by avdistill?)") from None
    if not isinstance(header, dict):
        raise DataError(path, f"malformed avdistill metadata: a JSON {type(header).__name__}, expected an object")
    return table, header


def read_table(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensor table, raw ``__metadata__``) of any safetensors file, each entry checked for well-formedness."""
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
    return table, meta if isinstance(meta, dict) else {}


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
    """Read the named tensors of a safetensors file; with `mmap`, map them (copy-on-write) instead of copying."""
    path = Path(path)
    table, _ = read_header(path)
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(path, f"missing tensors: {', '.join(missing)}")
    if mmap:
        return {n: _memmap(path, table, n) for n in names}
    try:
        with safe_open(str(path), framework="pt") as f:  # clone: safetensors' tensors share the file's
            return {n: f.get_tensor(n).clone() for n in names}  # mapping; one rewritten in place would change them
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
    # copy-on-write: pages are read from the file (and shared with the page cache) until written;
    # a write, e.g. a user normalising in place, goes to private memory, never to the file.
    return torch.from_numpy(np.memmap(path, dtype=dtype, mode="c", offset=8 + header_size + start, shape=shape))


class _FileRows:
    """A tensor's rows read from its file on demand, with plain reads.

    Scanning a memory-mapped split through its mapping would leave every page it read mapped
    into the process (resident, counted in its RSS: 430 MB of audio at 100k clips) for the rest
    of the run; read() goes through the page cache and keeps only the current chunk.
    """

    def __init__(self, path: Path, name: str):
        table, _ = read_table(path)
        with open(path, "rb") as f:
            data_start = 8 + int.from_bytes(f.read(8), "little")
        entry = table[name]
        self.path, self.shape = path, tuple(entry["shape"])
        self.dtype = np.dtype(_NUMPY_DTYPES[entry["dtype"]])
        self.offset = data_start + entry["data_offsets"][0]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, _ = rows.indices(self.shape[0])
        per_row = math.prod(self.shape[1:])
        array = np.fromfile(self.path, dtype=self.dtype, count=(stop - start) * per_row,
                            offset=self.offset + start * per_row * self.dtype.itemsize)
        return torch.from_numpy(array).view(stop - start, *self.shape[1:])


def load_prepared(path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> AVDataset:
    """Load a prepared dataset file. With `mmap`, tensors stay on disk until touched.

    `verify` checks the tensors' checksums (if the file records them) and scans the audio for
    NaN/Inf: one pass over the data. Shapes, dtypes, lengths and label ranges are checked
    either way (they cost no pass over the data).
    """
    path = Path(path)
    header = read_avdistill_header(path, FORMAT, "an avdistill dataset")
    if verify and "sha256" in header:
        verify_digests(path, header["sha256"])
    table, _ = read_table(path)
    present = _SPLITS + tuple(s for s in _OPTIONAL_SPLITS if any(n.startswith(f"{s}.") for n in table))
    names = tuple(f"{s}.{k}" for s in present for k in _KEYS)
    tensors = load_tensors(path, names, mmap=mmap)
    splits = {s: AVSplit(*(tensors[f"{s}.{k}"] for k in _KEYS)) for s in present}
    try:
        classes = [str(c) for c in header["classes"]]
        prep = Preprocessing.from_dict(header["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed avdistill metadata: {exc}") from None
    for s in present:  # a mapped file's audio is scanned with reads, not through the mapping (see _FileRows)
        check_split(splits[s], path, s, num_classes=len(classes), scan_audio=verify and not mmap)
        if verify and mmap:
            check_finite(_FileRows(path, f"{s}.audio"), path, s)
        if s != "train":
            check_same_layout(splits["train"], splits[s], path, s)
    return AVDataset(
        name=header.get("name", path.stem),
        classes=classes,
        train=splits["train"],
        test=splits["test"],
        val=splits.get("val"),
        preprocessing=prep,
        info=header.get("info", {}),
        source_path=str(path),
        checksum=content_checksum(path, header),
    )
