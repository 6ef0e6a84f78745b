"""Prepare a dataset from a local Hugging Face `datasets` dataset: audio + image columns instead of video clips.

Sources: a folder written by ``save_to_disk`` (a Dataset, or a DatasetDict whose splits are named),
one ``.parquet`` file, or a folder of them (the hub's layout; ``train-*.parquet`` and
``test-*.parquet`` name splits). Arrow folders are memory-mapped and Parquet files streamed, and
rows are decoded ``chunk_size`` at a time into ``<out>.work/`` (a rerun resumes there), then
written with :func:`save_dataset_streamed`: a dataset larger than memory works.

A row becomes a sample with the video clips' preprocessing (:mod:`avdistill.data.ingest.decode`):
the audio (an ``Audio`` column: encoded file bytes or a path, decoded by PyAV, so any sampling rate
and channel count) is resampled by FFmpeg, averaged over channels, cut to the 1-s window at
`offset`, and turned into a log-mel spectrogram; the image (an ``Image`` column, or a uint8
``Array2D``/``Array3D`` H x W [x C] frame) is resized by FFmpeg's area filter. `datasets`' own
decoding is switched off (``decode=False``): its audio decoder needs torchcodec.

Labels: a ``ClassLabel`` column keeps its names and order; a string or integer column's values
become the class names (sorted). Splits, in this order: `split_column` (train / test /
validation...), the source's own split names when it has several (a source without a test split
has its train rows drawn as below), else a seeded per-class `test_fraction` as for clips. Rows
with missing or undecodable media, unknown labels or splits are skipped and named in the manifest
(``file``: the source and the row), like broken clips.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from tqdm.auto import tqdm

from avdistill.data.audio import mel_filterbank
from avdistill.data.dataset import AVDataset, Preprocessing
from avdistill.data.ingest.decode import DecodeParams, MediaError, frame_pixels, window_log_mel
from avdistill.data.ingest.prepare import (MANIFEST_FORMAT, NORMALIZATIONS, manifest_path_for, normalization_stats,
                                           open_work_dir, report_counts, work_dir_for, worker_init)
from avdistill.data.ingest.sources import SPLITS, Clip, Skip, assign_splits
from avdistill.data.storage import TensorStream, load_prepared, save_dataset_streamed
from avdistill.errors import AVDistillError, ConfigError, DataError
from avdistill.files import atomic_path, versions, write_json

SPLIT_NAMES = {"train": "train", "test": "test", "validation": "val", "valid": "val", "val": "val", "dev": "val"}
UNSPLIT = -1  # split code of a row whose split the seeded draw decides


@dataclass(frozen=True)
class Columns:
    audio: str = "audio"
    image: str = "image"
    label: str = "label"
    split: str | None = None


def require_datasets():
    """The `datasets` module, or a ConfigError saying how to install it (it is the optional extra `hf`)."""
    try:
        import datasets  # the optional extra hf: pyarrow, pandas, huggingface-hub
    except ImportError:
        raise ConfigError("Hugging Face export/import needs the `datasets` package: "
                          "pip install 'avdistill[hf]'") from None
    return datasets


def open_source(path: str | os.PathLike) -> list[tuple[str | None, object]]:
    """[(split name or None, datasets.Dataset or IterableDataset)] of a local source; DataError if unreadable."""
    datasets = require_datasets()
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    try:
        if path.is_dir() and (path / "state.json").is_file():
            return [(None, datasets.load_from_disk(str(path)))]
        if path.is_dir() and (path / "dataset_dict.json").is_file():
            parts = datasets.load_from_disk(str(path))
            return [(name, parts[name]) for name in parts]
        if path.is_file() and path.suffix == ".parquet":
            return [(None, datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True))]
        if path.is_dir() and any(path.rglob("*.parquet")):
            parts = datasets.load_dataset("parquet", data_dir=str(path), streaming=True)
            return [(None, parts[name]) for name in parts] if len(parts) == 1 else [(n, parts[n]) for n in parts]
    except Exception as exc:  # noqa: BLE001  (datasets and pyarrow raise many kinds; the user needs one line)
        raise DataError(path, f"cannot read as a datasets dataset: {_first_line(exc)}") from None
    raise DataError(path, "not a datasets dataset: expected a folder written by save_to_disk, a .parquet file, "
                          "or a folder of .parquet files")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_columns(path: Path, features, columns: Columns) -> None:
    """One DataError naming the column and the file for a missing column or a wrong feature type."""
    datasets = require_datasets()
    if features is None:
        raise DataError(path, "no column types recorded (not written by the datasets library?); "
                              "save it with datasets (Audio and Image features) first")
    wanted = (("--audio-column", columns.audio, (datasets.Audio,), "an Audio feature (waveform + sampling rate)"),
              ("--image-column", columns.image, (datasets.Image, datasets.Array2D, datasets.Array3D),
               "an Image feature or a uint8 Array2D/Array3D frame"),
              ("--label-column", columns.label, (datasets.ClassLabel, datasets.Value), "a ClassLabel or a value"),
              ("--split-column", columns.split, (datasets.ClassLabel, datasets.Value), "a ClassLabel or a string"))
    for option, name, kinds, expected in wanted:
        if name is None:
            continue
        if name not in features:
            raise DataError(path, f"{option} {name!r}: no such column (columns: {', '.join(features)})")
        feature = features[name]
        if not isinstance(feature, kinds):
            raise DataError(path, f"{option} {name!r}: the column holds {_describe(feature)}, expected {expected}")
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)) and feature.dtype != "uint8":
            raise DataError(path, f"{option} {name!r}: frames of {feature.dtype}, expected uint8 pixels")
        if isinstance(feature, datasets.Value) and not (feature.dtype in ("string", "large_string")
                                                        or "int" in feature.dtype):
            raise DataError(path, f"{option} {name!r}: values of {feature.dtype}, expected strings or integers")


def _describe(feature) -> str:
    kind = type(feature).__name__
    return f"{kind}({feature.dtype})" if kind in ("Value", "Array2D", "Array3D") else kind


def _label_names(feature) -> list[str] | None:
    return list(feature.names) if hasattr(feature, "names") else None


def _value_name(value, names: list[str] | None) -> str | None:
    """A label or split cell as a name (ClassLabel: its name); None for a missing cell."""
    if value is None or (isinstance(value, (int, np.integer)) and names is not None and value < 0):
        return None
    if names is not None:
        return names[int(value)] if 0 <= int(value) < len(names) else None
    return str(value.item() if isinstance(value, np.generic) else value)


def find_classes(path: Path, parts, columns: Columns) -> list[str]:
    """Every class name: a ClassLabel's names in order, else the values found (numbers in numeric order)."""
    feature = parts[0][1].features[columns.label]
    names = _label_names(feature)
    if names is not None:
        return names
    found: set[str] = set()
    for _, ds in parts:
        for batch in ds.select_columns([columns.label]).iter(batch_size=4096):
            found.update(n for n in (_value_name(v, None) for v in batch[columns.label]) if n is not None)
    if not found:
        raise DataError(path, f"--label-column {columns.label!r}: every row's label is missing")
    numeric = all(n.lstrip("-").isdigit() for n in found)
    return sorted(found, key=int) if numeric else sorted(found)


def decode_audio(cell, base: Path, offset: float, params: DecodeParams) -> torch.Tensor | str:
    """Log-mel dB [1, F, T] of the 1-s window at `offset` of an Audio cell ({bytes, path}), or why not."""
    import av  # FFmpeg bindings, heavy: imported where media are decoded

    if not cell or (cell.get("bytes") is None and not cell.get("path")):
        return "missing audio"
    source = io.BytesIO(cell["bytes"]) if cell.get("bytes") is not None else _resolve(cell["path"], base)
    try:
        # FFmpeg probes 5 MB by default, reading an in-memory file through Python calls: 23 ms for 1 s of WAV.
        # 32 KiB finds the stream of any audio file (headers come first) in 2 ms; decoding reads the rest.
        with av.open(source, metadata_errors="ignore", options={"probesize": "32768"}) as container:
            if not container.streams.audio:
                raise MediaError("no audio track")
            stream = container.streams.audio[0]
            start = (container.start_time or 0) / av.time_base + offset
            resampler = av.AudioResampler(format="fltp", rate=params.sample_rate)
            chunks, audio_start, seconds = [], None, 0.0
            for frame in container.decode(stream):
                if audio_start is None:
                    audio_start = frame.time or 0.0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))  # mean of the channels, as for clips
                    seconds += out.samples / params.sample_rate
                if audio_start + seconds >= start + 1.0:
                    break
            else:
                chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(None)]
    except MediaError as exc:
        return str(exc)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        return f"undecodable audio ({_first_line(exc)})"
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return window_log_mel(wave, audio_start or 0.0, start, offset, params)


def decode_image(cell, base: Path, params: DecodeParams) -> torch.Tensor | str:
    """uint8 [C, H, W] at ``params.frame_size`` of an Image cell ({bytes, path}) or an H x W [x C] array, or why not."""
    import av  # FFmpeg bindings, heavy: imported where media are decoded

    if cell is None:
        return "missing image"
    try:
        if isinstance(cell, dict):
            if cell.get("bytes") is None and not cell.get("path"):
                return "missing image"
            from PIL import Image, UnidentifiedImageError  # Pillow: the optional extra hf

            source = io.BytesIO(cell["bytes"]) if cell.get("bytes") is not None else _resolve(cell["path"], base)
            try:
                with Image.open(source) as image:
                    image.load()
                    pixels = np.asarray(image.convert("L" if image.mode in ("L", "1", "I", "I;16", "F") else "RGB"))
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                return f"undecodable image ({_first_line(exc)})"
        else:
            pixels = np.asarray(cell, dtype=np.uint8)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3) or min(pixels.shape[:2]) < 1:
            return f"frame of shape {pixels.shape} (expected H x W grey or H x W x 3 RGB)"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="gray" if pixels.ndim == 2 else "rgb24")
        return frame_pixels(frame, params)  # FFmpeg's area resize and colour conversion, as for clips
    except MediaError as exc:
        return str(exc)


def _resolve(path: str, base: Path) -> str:
    resolved = Path(path) if Path(path).is_absolute() else base / path
    if not resolved.is_file():
        raise MediaError(f"missing file {path}")
    return str(resolved)


def _chunk_key(path: Path, parts, columns: Columns, classes: list[str], offset: float, chunk_size: int) -> str:
    key = json.dumps([str(path.resolve()), [name for name, _ in parts], columns.__dict__, classes, offset, chunk_size])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _decode_chunk(batch: dict, first_row: int, part: str | None, where: str, base: Path, columns: Columns,
                  classes: dict[str, int], label_names, split_names, offset: float, params: DecodeParams,
                  result: Path) -> None:
    """Decode one chunk of rows and write its samples (and per-row skip reasons) atomically to `result`."""
    audio, frames, labels, splits, rows, skips = [], [], [], [], [], []
    for k in range(len(batch[columns.audio])):
        row = first_row + k
        name = f"{where} row {row}"
        label = _value_name(batch[columns.label][k], label_names)
        split_value = _value_name(batch[columns.split][k], split_names) if columns.split else part
        split = SPLIT_NAMES.get(split_value.lower()) if split_value is not None else None
        reason = None
        if label is None:
            reason = "missing label"
        elif label not in classes:
            reason = f"unknown label {label!r} (not in --classes)"
        elif split_value is not None and split not in SPLITS:
            reason = f"unknown split {split_value!r} (expected {' or '.join(SPLITS)})"
        else:
            db = decode_audio(batch[columns.audio][k], base, offset, params)
            pixels = decode_image(batch[columns.image][k], base, params) if not isinstance(db, str) else None
            reason = db if isinstance(db, str) else pixels if isinstance(pixels, str) else None
        if reason is not None:
            skips.append(Skip(name, reason, label, split_value, offset).to_dict())
            continue
        audio.append(db)
        frames.append(pixels)
        labels.append(classes[label])
        splits.append(UNSPLIT if split is None else SPLITS.index(split))
        rows.append(row)
    channels = 1 if params.grayscale else 3
    tensors = {
        "audio": torch.stack(audio) if audio else torch.zeros(0, 1, params.n_mels, params.mel.n_frames),
        "frames": torch.stack(frames) if frames else torch.zeros(0, channels, *params.frame_size, dtype=torch.uint8),
        "labels": torch.tensor(labels, dtype=torch.int64), "splits": torch.tensor(splits, dtype=torch.int64),
        "rows": torch.tensor(rows, dtype=torch.int64)}
    with atomic_path(result) as tmp:
        save_file(tensors, str(tmp), metadata={"skips": json.dumps(skips)})


def _read_chunk(path: Path, names: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {n: f.get_tensor(n) for n in names}, json.loads(f.metadata()["skips"])
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable work file ({exc}); delete it and rerun") from None


def prepare_hf(source: str | os.PathLike, out: str | os.PathLike, columns: Columns = Columns(),
               params: DecodeParams = DecodeParams(), classes: list[str] | None = None, name: str | None = None,
               offset: float = 0.0, test_fraction: float = 0.2, seed: int = 0, normalization: str = "avdd",
               min_per_class: int = 1, chunk_size: int = 256, workers: int = 1, restart: bool = False,
               progress: bool = True) -> AVDataset:
    """Decode the rows of a local `datasets` dataset into the prepared dataset `out` (+ its manifest).

    With `workers` > 1, chunks are decoded in worker processes (forked where the platform can, as
    for clips), at most two per worker in flight; every chunk writes its own file, so the result
    does not depend on the number of workers.
    """
    path, out = Path(source), Path(out)
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {chunk_size}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    parts = open_source(path)
    datasets = require_datasets()
    for _, ds in parts:
        check_columns(path, ds.features, columns)
    found = find_classes(path, parts, columns)
    if classes is not None and len(set(classes)) != len(classes):
        raise ConfigError("--classes lists a class twice")
    classes = list(classes) if classes is not None else found
    index = {c: i for i, c in enumerate(classes)}
    features = parts[0][1].features
    label_names, split_names = _label_names(features[columns.label]), (
        _label_names(features[columns.split]) if columns.split else None)
    base = path if path.is_dir() else path.parent
    work = work_dir_for(out)
    open_work_dir(work, params, restart)
    key = _chunk_key(path, parts, columns, classes, offset, chunk_size)

    results: list[Path] = []
    pool = None
    if workers > 1:  # forked before the progress bar starts its monitor thread
        mel_filterbank(params.mel)  # cached before forking, so workers start at once
        context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=worker_init, initargs=(os.getpid(),))
    bar = tqdm(desc="rows", unit="row", disable=not progress, dynamic_ncols=True)
    running: dict = {}  # future -> rows; at most 2 chunks per worker in memory

    def collect(when) -> None:
        done, _ = wait(running, return_when=when)
        for future in done:
            future.result()
            bar.update(running.pop(future))

    try:
        named = {SPLIT_NAMES.get(name.lower()) for name, _ in parts if name}
        for part, ds in parts:
            where = path.name + (f" [{part}]" if part else "")
            # a source without a test split (train + validation, say): its train rows get the seeded draw
            split = part if part is None or "test" in named or SPLIT_NAMES.get(part.lower()) != "train" else None
            used = [c for c in (columns.audio, columns.image, columns.label, columns.split) if c]
            ds = ds.select_columns(used).cast_column(columns.audio, datasets.Audio(decode=False))
            if isinstance(features[columns.image], datasets.Image):
                ds = ds.cast_column(columns.image, datasets.Image(decode=False))
            try:
                for k, batch in enumerate(ds.with_format("numpy").iter(batch_size=chunk_size)):
                    result = work / f"{key}-{len(results):06d}.safetensors"
                    results.append(result)
                    rows = len(batch[columns.audio])
                    job = (batch, k * chunk_size, split, where, base, columns, index, label_names,
                           split_names if columns.split else None, offset, params, result)
                    if result.is_file():  # decoded by an interrupted run
                        bar.update(rows)
                    elif pool is None:
                        _decode_chunk(*job)
                        bar.update(rows)
                    else:
                        running[pool.submit(_decode_chunk, *job)] = rows
                        if len(running) >= 2 * workers:
                            collect(FIRST_COMPLETED)
            except (AVDistillError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001  (a damaged Arrow/Parquet file surfaces mid-iteration)
                raise DataError(path, f"cannot read rows of {where}: {_first_line(exc)}; the decoded chunks are "
                                      f"kept in {work} for the rerun") from None
        if running:
            collect(ALL_COMPLETED)
    finally:
        if pool is not None:  # on an interruption, drop the queued chunks instead of decoding them all first
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if not results:
        raise DataError(path, "the dataset has no rows")
    return _assemble(path, out, work, results, columns, params, classes, name, offset, test_fraction, seed,
                     normalization, min_per_class, chunk_size, parts)


def _assemble(path, out, work, results, columns, params, classes, name, offset, test_fraction, seed,
              normalization, min_per_class, chunk_size, parts) -> AVDataset:
    """Split, report, and stream the decoded chunks into the dataset file."""
    skipped, labels, splits = [], [], []
    for result in results:
        tensors, skips = _read_chunk(result, ("labels", "splits", "rows"))
        skipped += [Skip(**s) for s in skips]
        labels.append(tensors["labels"])
        splits.append(tensors["splits"])
    labels_all, splits_all = torch.cat(labels), torch.cat(splits)
    unsplit = torch.nonzero(splits_all == UNSPLIT).flatten().tolist()
    if unsplit:  # the seeded per-class draw of clips, over the rows that decoded
        clips = [Clip(path, f"row {i:012d}", classes[int(labels_all[i])], None, (offset,)) for i in unsplit]
        for i, clip in zip(unsplit, assign_splits(clips, test_fraction, seed)):
            splits_all[i] = SPLITS.index(clip.split)
    sizes = [len(t) for t in labels]
    split_of = list(torch.split(splits_all, sizes))
    counts = {s: {c: int(((splits_all == k) & (labels_all == i)).sum()) for i, c in enumerate(classes)}
              for k, s in enumerate(SPLITS)}
    report_counts(counts, classes, min_per_class, skipped, out, work, unit="row")
    totals = {s: int((splits_all == k).sum()) for k, s in enumerate(SPLITS)}
    if totals["test"] == 0:
        raise DataError(out, "the test split is empty: give test rows or a --test-fraction above 0")

    channels = 1 if params.grayscale else 3
    shapes = {"audio": (1, params.n_mels, params.mel.n_frames), "frames": (channels, *params.frame_size)}
    dtypes = {"audio": torch.float32, "frames": torch.uint8, "labels": torch.int64}

    def stream(split: int, key: str):
        for result, chunk_labels, codes in zip(results, labels, split_of):
            keep = codes == split
            if keep.any():
                yield chunk_labels[keep] if key == "labels" else _read_chunk(result, (key,))[0][key][keep]

    tensors = {f"{s}.{key}": TensorStream(dtypes[key], (totals[s], *shapes.get(key, ())), stream(k, key))
               for k, s in enumerate(SPLITS) for key in ("audio", "frames", "labels")}
    stats = normalization_stats(normalization, None, channels) if normalization == "avdd" else \
        _train_statistics(results, split_of, channels)
    source = {"kind": "hf", "path": str(path), "splits": [n for n, _ in parts if n] or None,
              "columns": {k: v for k, v in columns.__dict__.items() if v}, "offset": offset, "chunk_size": chunk_size,
              "test_fraction": test_fraction, "seed": seed}
    manifest = {
        "format": MANIFEST_FORMAT, "source": source,
        "parameters": {**params.to_dict(), "normalization": normalization, "min_per_class": min_per_class},
        "classes": classes, "counts": counts,
        "totals": {"listed": len(labels_all) + len(skipped), **totals, "skipped": len(skipped)},
        "skipped": [s.to_dict() for s in skipped],
        "notes": [f"class {c!r} has no test samples" for c in classes if counts["test"][c] == 0],
        "versions": versions(),
    }
    prep = Preprocessing(mel=params.mel, frame_size=tuple(params.frame_size), frame_channels=channels, **stats)
    info = {"source": "hf (datasets)", "manifest": manifest}
    save_dataset_streamed(out, name or out.stem, classes, prep, info, tensors)
    write_json(manifest_path_for(out), manifest)
    shutil.rmtree(work)
    return load_prepared(out, mmap=True, verify=False)


def _train_statistics(results: list[Path], split_of: list[torch.Tensor], channels: int) -> dict:
    """``--normalization train`` over the train rows, one chunk at a time (float64 sums; unbiased std)."""
    train = SPLITS.index("train")
    n_pixels = n_audio = 0
    frame_sum, frame_sq = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    audio_sum = audio_sq = 0.0
    for result, codes in zip(results, split_of):
        keep = codes == train
        if not keep.any():
            continue
        tensors, _ = _read_chunk(result, ("audio", "frames"))
        pixels = tensors["frames"][keep].double().div(255).transpose(0, 1).reshape(channels, -1)
        frame_sum += pixels.sum(1)
        frame_sq += pixels.square().sum(1)
        n_pixels += pixels.shape[1]
        audio = tensors["audio"][keep].double()
        audio_sum += float(audio.sum())
        audio_sq += float(audio.square().sum())
        n_audio += audio.numel()
    std = lambda s, q, n: ((q - s * s / n) / max(n - 1, 1)).clamp_min(0).sqrt()  # noqa: E731
    frame_mean, frame_std = frame_sum / n_pixels, std(frame_sum, frame_sq, n_pixels).clamp_min(1e-3)
    audio_std = float(std(torch.tensor(audio_sum), torch.tensor(audio_sq), n_audio))
    return {"frame_mean": tuple(frame_mean.tolist()), "frame_std": tuple(frame_std.tolist()),
            "audio_mean": audio_sum / n_audio, "audio_std": max(audio_std, 1e-3)}
