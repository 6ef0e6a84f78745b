"""``avdistill prepare``: turn source data into a prepared (pickle-free, memory-mappable) dataset.

Sources: AVDD ``.pt`` tensors (positional), video clips: a folder tree (``--folder``), a
VGGSound-style CSV (``--csv``) or AVE annotations (``--ave``), or a local Hugging Face ``datasets``
dataset with audio and image columns (``--hf``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from avdistill.data import load_avdd, save_dataset
from avdistill.data.ingest import DecodeParams, prepare_clips
from avdistill.data.ingest.hf import Columns, prepare_hf
from avdistill.data.ingest.prepare import manifest_path_for
from avdistill.data.ingest.sources import (AVE_PATTERN, CSV_PATTERN, VIDEO_EXTENSIONS, ave_clips, csv_clips,
                                           folder_clips)
from avdistill.data.split import DEFAULT_VAL_FRACTION, carve_validation, check_fraction
from avdistill.errors import ConfigError
from avdistill.files import check_output_file


def _frame_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(size) not in (1, 2) or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected positive N or HxW, got {text!r}")
    return (size[0], size[0]) if len(size) == 1 else size


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("prepare",
                       help="make a prepared dataset from AVDD .pt files, video clips or a datasets dataset",
                       description="Make avdistill's pickle-free, memory-mappable .safetensors dataset from AVDD .pt "
                                   "tensors, or from video clips (one 1-s window per clip, every second of an AVE "
                                   "event): a folder tree, a VGGSound-style CSV, or AVE annotations; or from a local "
                                   "Hugging Face datasets dataset's audio and image columns (--hf). Video and --hf "
                                   "inputs also write <out stem>.manifest.json (source, parameters, counts, skipped "
                                   "clips).")
    p.add_argument("train", nargs="?", help="AVDD .pt with the *_train keys (and possibly the *_test keys)")
    p.add_argument("test", nargs="?", help="AVDD .pt with the *_test keys, if they live in a separate file")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--name", help="dataset name (default: the train file's or the output's stem)")
    p.add_argument("--classes", help="comma-separated class names in label order (AVDD default: from the file, or "
                                     "class_0..; video default: every label found, sorted; clips of other labels "
                                     "are skipped as unknown)")
    src = p.add_argument_group("video sources (instead of .pt files)")
    src.add_argument("--folder", metavar="ROOT", help="clips in ROOT/train|test/<class>/… or ROOT/<class>/…")
    src.add_argument("--csv", metavar="FILE", help="VGGSound-style CSV: video_id,start_seconds,label[,split]")
    src.add_argument("--ave", metavar="FILE", nargs="+",
                     help="AVE annotation files (category&video_id&quality&start&end): one (split by video) or "
                          "two (train, test); every second of an event is one sample")
    src.add_argument("--hf", metavar="PATH",
                     help="a local Hugging Face datasets dataset: a save_to_disk folder, a .parquet file or a folder "
                          "of them, with audio, image and label columns (see docs/INGEST.md)")
    src.add_argument("--audio-column", help="--hf: the Audio column (default: audio)")
    src.add_argument("--image-column", help="--hf: the Image (or uint8 H x W [x C] array) column (default: image)")
    src.add_argument("--label-column", help="--hf: the ClassLabel, string or integer label column (default: label)")
    src.add_argument("--split-column", help="--hf: a column naming each row's split: train, test (default: the "
                                            "source's split names if it has several, else --test-fraction)")
    src.add_argument("--chunk-size", type=int, default=256,
                     help="--hf: rows decoded and held in memory at a time (default: 256)")
    src.add_argument("--video-dir", help="folder the --csv/--ave file names are relative to "
                                         "(default: the CSV's folder; required with --ave)")
    src.add_argument("--video-pattern", help="file name of a row, with fields {video_id} {start} {start_seconds} "
                                             "{label} {split} (default: --csv '{video_id}_{start:06d}.mp4', "
                                             "--ave '{video_id}.mp4')")
    src.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS),
                     help="--folder: comma-separated video file extensions; other files are skipped and reported "
                          "(default: %(default)s)")
    src.add_argument("--test-fraction", type=float, default=0.2,
                     help="fraction of each class's clips (AVE: videos) put in the test split when the source "
                          "has no split (default: 0.2)")
    src.add_argument("--seed", type=int, default=0, help="seed of that split and of the validation split (default: 0)")
    dec = p.add_argument_group("decoding")
    dec.add_argument("--offset", type=float, default=0.0,
                     help="--folder/--csv/--hf: start of the 1-s window in seconds into each clip (default: 0; "
                          "VGGS-10K as in AVDD: 4)")
    dec.add_argument("--sample-rate", type=int, default=11000, help="audio resampled to this rate in Hz (default: 11000)")
    dec.add_argument("--n-mels", type=int, default=128, help="mel bands (default: 128)")
    dec.add_argument("--frame-size", type=_frame_size, default=(224, 224),
                     help="frames resized to N x N or HxW pixels (default: 224)")
    dec.add_argument("--grayscale", action="store_true", help="store 1-channel grey frames instead of RGB")
    dec.add_argument("--frame-fps", type=float,
                     help="with --frame-index: take the k-th of n frames sampled at this rate "
                          "(default: the middle frame; AVE as in AVDD: --frame-fps 8 --frame-index 3)")
    dec.add_argument("--frame-index", type=int, help="k (0-based) for --frame-fps")
    dec.add_argument("--min-coverage", type=float, default=0.9,
                     help="skip a window whose audio covers less than this many seconds; shorter gaps are "
                          "zero-padded (default: 0.9)")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                           help="fraction of the train split carved out as a validation split (stored and checksummed "
                                "with the others; 0: none): by recording for video sources (a video's windows never "
                                "straddle splits), stratified per class for AVDD .pt files, which name no recordings; "
                                "not yet for --hf; seeded by --seed (default: %(default)s)")
    run_group.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                           help="decoding processes (default: the number of CPUs, %(default)s here)")
    run_group.add_argument("--normalization", choices=("avdd", "train"), default="avdd",
                           help="model-input statistics: avdd = AVDD's frame mean/std, audio unnormalised; train = "
                                "frame and audio statistics of the train split (default: avdd)")
    run_group.add_argument("--min-per-class", type=int, default=1,
                           help="stop with an error if a class has fewer usable train samples (default: 1)")
    run_group.add_argument("--restart", action="store_true",
                           help="discard decoded clips left by an interrupted run instead of resuming")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _video_clips(args):
    if args.folder:
        extensions = tuple(e.strip() for e in args.extensions.split(",") if e.strip())
        return folder_clips(args.folder, args.offset, extensions)
    if args.csv:
        return csv_clips(args.csv, args.video_dir, args.video_pattern or CSV_PATTERN, args.offset)
    if not args.video_dir:
        raise ConfigError("--ave needs --video-dir (the folder holding the videos)")
    return ave_clips(args.ave, args.video_dir, args.video_pattern or AVE_PATTERN)


def run(args) -> None:
    check_output_file(args.out)

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    sources = [s for s in ("train", "folder", "csv", "ave", "hf") if getattr(args, s)]
    if len(sources) != 1:
        raise ConfigError("give exactly one source: AVDD .pt file(s), --folder, --csv, --ave or --hf"
                          + (f" (got {', '.join(sources)})" if sources else ""))
    check_fraction(args.val_fraction)
    column_options = [f"--{c}-column" for c in ("audio", "image", "label", "split") if getattr(args, f"{c}_column")]
    if column_options and not args.hf:
        raise ConfigError(f"{', '.join(column_options)} only go with --hf")
    if args.train:
        dataset = load_avdd(args.train, args.test, classes=classes, name=args.name)
        dataset.train, dataset.val, _ = carve_validation(dataset.train, args.val_fraction, args.seed)
        dataset.info = {**dataset.info, "validation": {"carved_from": "train", "by": "class (stratified)",
                                                       "fraction": args.val_fraction, "seed": args.seed}}
        save_dataset(dataset, args.out)
    else:
        if args.test:
            raise ConfigError(f"unexpected positional argument {args.test!r} with a video source")
        params = DecodeParams(sample_rate=args.sample_rate, n_mels=args.n_mels, frame_size=args.frame_size,
                              grayscale=args.grayscale, frame_fps=args.frame_fps, frame_index=args.frame_index,
                              min_coverage=args.min_coverage)
        if args.hf:
            if args.frame_fps is not None:
                raise ConfigError("--frame-fps/--frame-index pick a frame of a video; an --hf row holds one image")
            columns = Columns(audio=args.audio_column or "audio", image=args.image_column or "image",
                              label=args.label_column or "label", split=args.split_column)
            dataset = prepare_hf(args.hf, args.out, columns, params, classes=classes, name=args.name,
                                 offset=args.offset, test_fraction=args.test_fraction, seed=args.seed,
                                 normalization=args.normalization, min_per_class=args.min_per_class,
                                 chunk_size=args.chunk_size, workers=args.workers, restart=args.restart,
                                 progress=not args.quiet)
        else:
            clips, skips, source = _video_clips(args)
            dataset = prepare_clips(clips, skips, source, args.out, params, classes=classes, name=args.name,
                                    test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                                    seed=args.seed, workers=args.workers,
                                    normalization=args.normalization, min_per_class=args.min_per_class,
                                    restart=args.restart, progress=not args.quiet)
        print(f"manifest: {manifest_path_for(Path(args.out))}")
    print(dataset.describe())
    print(f"wrote {args.out}")
