"""Turn listed clips into a prepared dataset: worker pool, resume, skip report, manifest.

Each clip is decoded once (in a worker process when ``workers > 1``) and its windows written
atomically to ``<out>.work/<clip id>.safetensors`` (tensors plus a JSON list of per-window skip
reasons; no pickle). A rerun after an interruption finds those files and decodes only the rest;
clip ids hash the file's path and offsets, and ``params.json`` in the work folder refuses to mix
results decoded with different parameters. Results are assembled in listing order, so worker
timing never changes the dataset. The work folder is removed once the dataset is written.

Workers are forked where the platform can (Linux): they inherit the imported torch, PyAV and the
cached mel filterbank and start in milliseconds, where spawned ones spend seconds importing
(measured in docs/INGEST.md). Each worker computes with one torch thread, as DataLoader
workers do; elsewhere (macOS, Windows) they are spawned.

Frame normalisation (decision, option ``normalization``): ``"avdd"`` (default) uses AVDD's
frame mean/std and leaves audio unnormalised, which keeps datasets comparable with AVDD files;
``"train"`` computes per-channel frame statistics and the audio dB mean/std on the train split,
which suits footage far from AVDD's (e.g. grey or synthetic clips).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from tabulate import tabulate
from tqdm import tqdm

from avdistill.data.audio import mel_filterbank
from avdistill.data.dataset import AVDD_FRAME_MEAN, AVDD_FRAME_STD, AVDataset, AVSplit, Preprocessing
from avdistill.data.ingest.decode import DecodeParams, MediaError, decode_windows
from avdistill.data.ingest.sources import SPLITS, Clip, Skip, assign_splits, filter_classes
from avdistill.data.split import DEFAULT_VAL_FRACTION, carve_validation, check_fraction
from avdistill.data.storage import save_dataset
from avdistill.errors import ConfigError, DataError
from avdistill.files import atomic_path, versions, write_json

NORMALIZATIONS = ("avdd", "train")
MANIFEST_FORMAT = "avdistill.ingest-manifest/1"


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".work")


def manifest_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".manifest.json")


def clip_id(clip: Clip) -> str:
    key = json.dumps([str(clip.path.resolve()), list(clip.offsets)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def decode_to_file(path: str, offsets: tuple[float, ...], params: dict, result: str) -> list[str | None]:
    """Decode one clip and write its windows to `result`; returns per-window skip reasons (None = kept).

    Runs in worker processes, so it takes and returns plain values.
    """
    torch.set_num_threads(1)
    decode = DecodeParams.from_dict(params)
    try:
        windows = decode_windows(path, offsets, decode)
    except MediaError as exc:
        windows = [str(exc)] * len(offsets)
    kept = [w for w in windows if not isinstance(w, str)]
    channels = 1 if decode.grayscale else 3
    audio_shape, frame_shape = (0, 1, decode.n_mels, decode.mel.n_frames), (0, channels, *decode.frame_size)
    tensors = {
        "audio": torch.stack([a for a, _ in kept]) if kept else torch.zeros(audio_shape),
        "frames": torch.stack([f for _, f in kept]) if kept else torch.zeros(frame_shape, dtype=torch.uint8),
    }
    reasons = [w if isinstance(w, str) else None for w in windows]
    with atomic_path(result) as tmp:
        save_file(tensors, str(tmp), metadata={"reasons": json.dumps(reasons)})
    return reasons


def _read_result(path: Path) -> tuple[dict[str, torch.Tensor], list[str | None]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            reasons = json.loads(f.metadata()["reasons"])
            return {k: f.get_tensor(k) for k in ("audio", "frames")}, reasons
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable work file ({exc}); delete it and rerun") from None


def open_work_dir(work: Path, params: DecodeParams, restart: bool) -> None:
    state = work / "params.json"
    if restart and work.exists():
        shutil.rmtree(work)
    if state.is_file():
        try:
            stored = json.loads(state.read_text())
        except (OSError, json.JSONDecodeError):
            stored = None
        if stored != params.to_dict():
            raise ConfigError(f"{work} holds clips decoded with other parameters ({stored}); "
                              f"rerun with --restart to discard them, or use another --out")
    work.mkdir(parents=True, exist_ok=True)
    write_json(state, params.to_dict())


def worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it cancels the queue
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A forked worker holds the pool's pipes open itself, so it would outlive a killed parent; it must not."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _decode_all(jobs: list[tuple[Clip, Path]], params: DecodeParams, workers: int, progress: bool) -> None:
    """Decode every job whose result file is missing, logging skips as they happen."""
    todo = [(clip, result) for clip, result in jobs if not result.exists()]
    args = [(str(clip.path), clip.offsets, params.to_dict(), str(result)) for clip, result in todo]
    pool = None
    if workers > 1 and todo:  # forked before the progress bar starts its monitor thread
        mel_filterbank(params.mel)  # imported and cached before forking, so workers start at once
        context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=worker_init, initargs=(os.getpid(),))
        futures = {pool.submit(decode_to_file, *a): clip for (clip, _), a in zip(todo, args)}
    done = len(jobs) - len(todo)
    bar = tqdm(total=len(jobs), initial=done, desc="decoding clips", unit="clip", disable=not progress)
    if done:
        bar.write(f"resuming: {done} of {len(jobs)} clips already decoded")

    def log(clip: Clip, reasons: list[str | None]) -> None:
        for offset, reason in zip(clip.offsets, reasons):
            if reason is not None:
                bar.write(f"skip {clip.name} @ {offset:g} s: {reason}", file=sys.stderr)
        bar.update()

    try:
        if pool is None:
            for (clip, _), a in zip(todo, args):
                log(clip, decode_to_file(*a))
        else:
            for future in as_completed(futures):
                log(futures[future], future.result())
    finally:
        if pool is not None:  # on an interruption, drop the queued clips instead of decoding them all first
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def normalization_stats(kind: str, train: AVSplit, channels: int) -> dict:
    if kind == "avdd":
        if channels == 3:
            return {"frame_mean": AVDD_FRAME_MEAN, "frame_std": AVDD_FRAME_STD}
        return {"frame_mean": (sum(AVDD_FRAME_MEAN) / 3,), "frame_std": (sum(AVDD_FRAME_STD) / 3,)}
    pixels = train.frames.float().div(255).transpose(0, 1).reshape(channels, -1)
    return {"frame_mean": tuple(pixels.mean(1).tolist()), "frame_std": tuple(pixels.std(1).clamp_min(1e-3).tolist()),
            "audio_mean": float(train.audio.mean()), "audio_std": max(float(train.audio.std()), 1e-3)}


def count_table(counts: dict[str, dict[str, int]], classes: list[str], min_per_class: int) -> str:
    rows = []
    for c in classes:
        train, val, test = counts["train"][c], counts.get("val", {}).get(c, 0), counts["test"][c]
        note = "EMPTY" if train + val + test == 0 else (f"fewer than {min_per_class} train" if train < min_per_class
                                                       else ("no test samples" if test == 0 else ""))
        rows.append([c, train, val, test, note])
    return tabulate(rows, headers=["class", "train", "val", "test", ""], tablefmt="simple")


def skip_table(skipped: list[Skip]) -> str:
    rows = [[s.file, "" if s.offset is None else f"{s.offset:g}", s.label or "", s.reason] for s in skipped]
    return tabulate(rows, headers=["file", "at (s)", "label", "reason"], tablefmt="simple")


def report_counts(counts: dict[str, dict[str, int]], classes: list[str], min_per_class: int, skipped: list[Skip],
                  out: Path, work: Path, unit: str) -> None:
    """Print the per-class counts and the skipped `unit`s (clips, rows); refuse classes short of train samples."""
    print(count_table(counts, classes, min_per_class))
    if skipped:
        print(f"\nskipped {len(skipped)} {unit}{'' if len(skipped) == 1 else 's'}:\n{skip_table(skipped)}")
    short = [c for c in classes if counts["train"][c] < min_per_class]
    if short:
        detail = ", ".join(f"{c!r} ({counts['train'][c]})" for c in short)
        raise DataError(out, f"too few usable train samples (need {min_per_class}) in classes {detail}; fix or drop "
                             f"them (--classes) or lower --min-per-class; decoded {unit}s are kept in {work} for the "
                             "rerun")


def prepare_clips(clips: list[Clip], listing_skips: list[Skip], source: dict, out: str | os.PathLike,
                  params: DecodeParams = DecodeParams(), classes: list[str] | None = None, name: str | None = None,
                  test_fraction: float = 0.2, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                  workers: int = 1, normalization: str = "avdd",
                  min_per_class: int = 1, restart: bool = False, progress: bool = True) -> AVDataset:
    """Decode `clips`, write the dataset to `out` and its manifest beside it; return the dataset.

    Clips without a split are split with :func:`assign_splits` among those that decoded, so broken
    clips take no test places. A validation split (`val_fraction` of the train windows, by recording:
    :mod:`avdistill.data.split`) is then carved out of train. Skipped clips never stop the run; a class with fewer than
    `min_per_class` usable train samples, or an empty test split, stops it with a DataError after
    the skip report (the decoded clips stay in the work folder for the rerun).
    """
    out = Path(out)
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_fraction(val_fraction)
    clips, label_skips, classes = filter_classes(clips, classes)
    if not clips:
        skipped = list(listing_skips) + label_skips
        if skipped:
            print(f"skipped {len(skipped)} entries:\n{skip_table(skipped)}")
        where = source.get("root") or source.get("csv") or source["annotations"][0]
        raise DataError(where, f"no clips to decode: all {len(skipped)} listed entries were skipped")
    work = work_dir_for(out)
    open_work_dir(work, params, restart)
    jobs = [(clip, work / f"{clip_id(clip)}.safetensors") for clip in clips]
    _decode_all(jobs, params, workers, progress)

    skipped = list(listing_skips) + label_skips
    decoded = []
    for clip, result in jobs:
        tensors, reasons = _read_result(result)
        for offset, reason in zip(clip.offsets, reasons):
            if reason is not None:
                skipped.append(Skip(clip.name, reason, clip.label, clip.split, offset))
        if len(tensors["audio"]):
            decoded.append((clip, tensors))
    usable = assign_splits([clip for clip, _ in decoded], test_fraction, seed)  # broken clips take no test slot

    index = {c: i for i, c in enumerate(classes)}
    parts = {s: {"audio": [], "frames": [], "labels": []} for s in SPLITS}
    train_groups = []  # each train window's recording, so the validation split never cuts one
    for clip, (_, tensors) in zip(usable, decoded):
        part = parts[clip.split]
        part["audio"].append(tensors["audio"])
        part["frames"].append(tensors["frames"])
        part["labels"].append(torch.full((len(tensors["audio"]),), index[clip.label], dtype=torch.int64))
        if clip.split == "train":
            train_groups += [clip.group_name] * len(tensors["audio"])
    channels = 1 if params.grayscale else 3
    empty = {"audio": torch.zeros(0, 1, params.n_mels, params.mel.n_frames),
             "frames": torch.zeros(0, channels, *params.frame_size, dtype=torch.uint8),
             "labels": torch.zeros(0, dtype=torch.int64)}
    splits = {s: AVSplit(**{k: torch.cat(v) if v else empty[k] for k, v in parts[s].items()}) for s in SPLITS}
    splits["train"], splits["val"], _ = carve_validation(splits["train"], val_fraction, seed, train_groups)
    names = [s for s in ("train", "val", "test") if splits[s] is not None]
    counts = {s: {c: int((splits[s].labels == i).sum()) for i, c in enumerate(classes)} for s in names}

    report_counts(counts, classes, min_per_class, skipped, out, work, unit="clip")
    if len(splits["test"]) == 0:
        raise DataError(out, "the test split is empty: give test clips or a --test-fraction above 0")

    manifest = {
        "format": MANIFEST_FORMAT,
        "source": {**source, "test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed,
                   "val_by": "recording (video id, else file)"},
        "parameters": {**params.to_dict(), "normalization": normalization, "min_per_class": min_per_class},
        "classes": classes,
        "counts": counts,
        "totals": {"listed": len(clips) + len(listing_skips) + len(label_skips),
                   **{s: len(splits[s]) for s in names}, "skipped": len(skipped)},
        "skipped": [s.to_dict() for s in skipped],
        "notes": [f"class {c!r} has no test samples" for c in classes if counts["test"][c] == 0],
        "versions": versions(),
    }
    prep = Preprocessing(mel=params.mel, frame_size=tuple(params.frame_size), frame_channels=channels,
                         **normalization_stats(normalization, splits["train"], channels))
    dataset = AVDataset(name=name or out.stem, classes=classes, train=splits["train"], test=splits["test"],
                        val=splits["val"], preprocessing=prep, info={"source": f"media ({source['kind']})", "manifest": manifest})
    save_dataset(dataset, out)
    write_json(manifest_path_for(out), manifest)
    shutil.rmtree(work)
    return dataset
