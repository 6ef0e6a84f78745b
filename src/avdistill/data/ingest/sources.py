"""Where clips come from: a folder tree, a VGGSound-style CSV, or AVE-style annotations.

Every source becomes the same list of :class:`Clip` (one media file, the 1-second windows to
take from it, its label and split) plus the :class:`Skip` records of entries that cannot become
samples before any decoding (unknown label, missing file, non-video extension, malformed row).
Listing is sorted, so the same inputs always give the same clips in the same order.

Decisions:

- Folder: ``root/train/<class>/…`` and ``root/test/<class>/…`` when both split folders exist,
  otherwise ``root/<class>/…`` split by :func:`assign_splits`. Files are found recursively
  below each class folder; hidden files are ignored; files whose extension is not a video
  extension are reported as skipped (not silently dropped), so every file is accounted for;
  an empty class folder is reported too.
- CSV (VGGSound): rows ``video_id,start_seconds,label,split`` (split optional, header optional);
  ``pattern`` maps a row to a file, by default VGGSound's downloaded 10-s clips
  ``{video_id}_{start:06d}.mp4``. The window offset is measured inside that file.
- AVE: lines ``category&video_id&quality&start&end``; every whole second in [start, end) is
  one sample. One annotation file is split by video, never by second, so the seconds of one
  video never end up in both splits.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from avdistill.errors import ConfigError, DataError
from avdistill.seeding import generator

SPLITS = ("train", "test")
VIDEO_EXTENSIONS = ("mp4", "mkv", "webm", "avi", "mov", "m4v", "mpg", "mpeg", "ts", "flv", "3gp", "ogv", "wmv")
CSV_PATTERN = "{video_id}_{start:06d}.mp4"
AVE_PATTERN = "{video_id}.mp4"
MAX_EVENT_SECONDS = 3600  # AVE events last at most 10 s; longer ones are typos, not hours of windows


@dataclass(frozen=True)
class Clip:
    """One media file and the window offsets (seconds) to take from it; one sample per offset."""

    path: Path
    name: str  # how reports name the file: its path relative to the source
    label: str
    split: str | None  # None until assign_splits decides
    offsets: tuple[float, ...]
    group: str | None = None  # the recording it comes from (a video id); None: the file itself

    @property
    def group_name(self) -> str:
        """What a validation split keeps together: all windows of one recording stay on one side."""
        return self.group if self.group is not None else self.name


@dataclass(frozen=True)
class Skip:
    """An entry that gave no sample, and why."""

    file: str
    reason: str
    label: str | None = None
    split: str | None = None
    offset: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def assign_splits(clips: list[Clip], test_fraction: float, seed: int) -> list[Clip]:
    """Give every clip without a split one: per class, a seeded `test_fraction` of its clips go to test.

    Stratified so every class with at least two clips has one of each; the draw depends only on
    (seed, class name, the class's sorted clip names), not on other classes.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    by_label: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        if clip.split is None:
            by_label.setdefault(clip.label, []).append(i)
    result = list(clips)
    for label, indices in sorted(by_label.items()):
        indices.sort(key=lambda i: clips[i].name)
        n = len(indices)
        n_test = 0 if n < 2 or test_fraction == 0 else min(n - 1, max(1, round(n * test_fraction)))
        order = torch.randperm(n, generator=generator(seed, "shuffle", zlib.crc32(label.encode()))).tolist()
        test = {indices[j] for j in order[:n_test]}
        for i in indices:
            result[i] = dataclasses.replace(clips[i], split="test" if i in test else "train")
    return result


def filter_classes(clips: list[Clip], classes: list[str] | None) -> tuple[list[Clip], list[Skip], list[str]]:
    """Keep clips whose label is in `classes` (default: every label found, sorted); skip the rest."""
    found = sorted({c.label for c in clips})
    if classes is None:
        return clips, [], found
    if len(set(classes)) != len(classes):
        raise ConfigError("--classes lists a class twice")
    known = set(classes)
    kept = [c for c in clips if c.label in known]
    skips = [Skip(c.name, f"unknown label {c.label!r} (not in --classes)", c.label, c.split) for c in clips
             if c.label not in known]
    return kept, skips, list(classes)


def folder_clips(root: str | Path, offset: float = 0.0,
                 extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> tuple[list[Clip], list[Skip], dict]:
    """Clips of ``root/<split>/<class>/…`` or ``root/<class>/…`` (split None: see assign_splits)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a folder")
    split_layout = all((root / s).is_dir() for s in SPLITS)
    tops = [(root / s, s) for s in SPLITS] if split_layout else [(root, None)]
    exts = {e.lower().lstrip(".") for e in extensions}
    clips, skips = [], []
    for top, split in tops:
        for class_dir in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(p for p in class_dir.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(class_dir).parts))
            if not files:
                skips.append(Skip(class_dir.relative_to(root).as_posix() + "/", "empty class folder", class_dir.name,
                                  split))
            for f in files:
                name = f.relative_to(root).as_posix()
                if f.suffix.lower().lstrip(".") not in exts:
                    skips.append(Skip(name, f"extension {f.suffix or '(none)'!r} is not a video extension",
                                      class_dir.name, split))
                else:
                    clips.append(Clip(f, name, class_dir.name, split, (float(offset),)))
    if not clips and not skips:
        raise DataError(root, "no class folders with files (expected root/<class>/<clip> or root/train|test/<class>/<clip>)")
    source = {"kind": "folder", "root": str(root), "layout": "root/<split>/<class>" if split_layout else "root/<class>",
              "offset": offset, "extensions": sorted(exts)}
    return clips, skips, source


def _format(pattern: str, **fields) -> str:
    try:
        return pattern.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--video-pattern {pattern!r} cannot be filled ({exc}); "
                          f"available fields: {', '.join(sorted(fields))}") from None


def csv_clips(csv_path: str | Path, video_dir: str | Path | None = None, pattern: str = CSV_PATTERN,
              offset: float = 0.0) -> tuple[list[Clip], list[Skip], dict]:
    """Clips of a VGGSound-style CSV: ``video_id,start_seconds,label[,split]`` per row."""
    csv_path = Path(csv_path)
    video_dir = Path(video_dir) if video_dir is not None else csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_path, f"cannot read CSV: {exc}") from None
    clips, skips = [], []
    for line, row in enumerate(rows, start=1):
        row = [field.strip() for field in row]
        if not row or not any(row):
            continue
        where = f"{csv_path.name} line {line}"
        if len(row) not in (3, 4):
            skips.append(Skip(where, f"malformed row ({len(row)} fields, expected video_id,start_seconds,label[,split])"))
            continue
        video_id, start_text, label = row[:3]
        split = row[3] if len(row) == 4 else None
        try:
            start = float(start_text)
        except ValueError:
            if line == 1:  # a header row
                continue
            skips.append(Skip(where, f"start_seconds {start_text!r} is not a number", label, split))
            continue
        if not math.isfinite(start):
            skips.append(Skip(where, f"start_seconds {start_text!r} is not a finite number", label, split))
            continue
        name = _format(pattern, video_id=video_id, start=int(start), start_seconds=start_text,
                       label=label, split=split or "")
        if split is not None and split not in SPLITS:
            skips.append(Skip(name, f"unknown split {split!r} (expected train or test)", label, split))
        elif not (video_dir / name).is_file():
            skips.append(Skip(name, "missing file", label, split))
        else:
            clips.append(Clip(video_dir / name, name, label, split, (float(offset),), group=video_id))
    if not clips and not skips:
        raise DataError(csv_path, "no rows")
    source = {"kind": "csv", "csv": str(csv_path), "video_dir": str(video_dir), "pattern": pattern, "offset": offset}
    return clips, skips, source


def _ave_file(path: Path, split: str | None, video_dir: Path, pattern: str) -> tuple[list[Clip], list[Skip]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read AVE annotations: {exc}") from None
    clips, skips = [], []
    for number, text in enumerate(lines, start=1):
        fields = [f.strip() for f in text.strip().split("&")]
        if not any(fields):
            continue
        if number == 1 and fields[0].lower() == "category":
            continue
        where = f"{path.name} line {number}"
        if len(fields) != 5:
            skips.append(Skip(where, f"malformed line ({len(fields)} fields, expected category&video_id&quality&start&end)"))
            continue
        label, video_id, _, start_text, end_text = fields
        try:
            start, end = int(float(start_text)), int(float(end_text))
        except (ValueError, OverflowError):
            skips.append(Skip(where, f"start/end {start_text!r}/{end_text!r} are not finite numbers", label, split))
            continue
        name = _format(pattern, video_id=video_id, label=label)
        if end <= start or start < 0:
            skips.append(Skip(name, f"empty event [{start}, {end})" if end <= start else f"negative start {start}",
                              label, split))
        elif end - start > MAX_EVENT_SECONDS:  # a typo like end=1e9 must not become a billion windows
            skips.append(Skip(name, f"event of {end - start} s is longer than {MAX_EVENT_SECONDS} s", label, split))
        elif not (video_dir / name).is_file():
            skips.append(Skip(name, "missing file", label, split))
        else:
            clips.append(Clip(video_dir / name, name, label, split, tuple(float(s) for s in range(start, end)),
                              group=video_id))
    return clips, skips


def ave_clips(annotations: list[str | Path], video_dir: str | Path,
              pattern: str = AVE_PATTERN) -> tuple[list[Clip], list[Skip], dict]:
    """Clips of AVE annotation files: [all] (split later) or [train, test]."""
    files = [Path(a) for a in annotations]
    if len(files) not in (1, 2):
        raise ConfigError(f"--ave takes one annotation file (split by video) or two (train, test), got {len(files)}")
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(video_dir, "video folder not found")
    splits = [None] if len(files) == 1 else list(SPLITS)
    clips, skips = [], []
    for path, split in zip(files, splits):
        c, s = _ave_file(path, split, video_dir, pattern)
        clips += c
        skips += s
    source = {"kind": "ave", "annotations": [str(f) for f in files], "video_dir": str(video_dir), "pattern": pattern}
    return clips, skips, source
