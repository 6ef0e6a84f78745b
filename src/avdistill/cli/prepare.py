"""``avdistill prepare``: turn source data into a prepared (pickle-free, memory-mappable) dataset."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("prepare", help="convert AVDD .pt files into a prepared dataset",
                       description="Convert AVDD .pt tensors (audio_train, images_train, labels_train and the _test "
                                   "keys) into avdistill's pickle-free, memory-mappable .safetensors dataset.")
    p.add_argument("train", help="AVDD .pt with the *_train keys (and possibly the *_test keys)")
    p.add_argument("test", nargs="?", help="AVDD .pt with the *_test keys, if they live in a separate file")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--name", help="dataset name (default: the train file's stem)")
    p.add_argument("--classes", help="comma-separated class names in label order (default: from the file, or class_0..)")
    return p


def run(args) -> None:
    from avdistill.data import load_avdd, save_dataset

    classes = args.classes.split(",") if args.classes else None
    dataset = load_avdd(args.train, args.test, classes=classes, name=args.name)
    save_dataset(dataset, args.out)
    print(dataset.describe())
    print(f"wrote {args.out}")
