"""``avdistill export``: a synthetic set as a Hugging Face `datasets` dataset with a dataset card."""

from __future__ import annotations

import argparse
import shlex
import sys

from avdistill.cli.common import add_verify_option
from avdistill.data.ingest.hf import require_datasets
from avdistill.reporting.card import find_evaluation
from avdistill.reporting.export import export_hf
from avdistill.synthetic import load_synthetic


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a synthetic set as a Hugging Face datasets dataset with a card",
                       description="Write a synthetic set as a Hugging Face `datasets` dataset (Arrow for "
                                   "load_from_disk, Parquet for the hub) with a README.md dataset card: frames "
                                   "(Image), Griffin-Lim sound (Audio), log-mel spectrograms (array), labels "
                                   "(ClassLabel). Publishing is yours: hf upload or push_to_hub "
                                   "(see the README); nothing here reaches the network.")
    p.add_argument("synthetic", help="synthetic set file (synthetic.safetensors)")
    p.add_argument("--format", choices=("hf",), required=True, help="output format: hf (Hugging Face datasets)")
    p.add_argument("--out", required=True, help="output folder (new, empty, or an earlier export, which is replaced)")
    p.add_argument("--packed", action="store_true",
                   help="IDM factor sets: rows are the stored (packed) pairs instead of the training pairs they "
                        "unpack into; no audio column")
    p.add_argument("--license", help="the card's licence id (hub names, e.g. cc-by-sa-3.0; default: other); "
                                     "a distilled set's licence follows its source dataset's")
    p.add_argument("--eval", metavar="JSON", help="the `avdistill evaluate --json` file with this set's accuracy "
                                                  "(default: any such file in the set's folder)")
    p.add_argument("--griffin-lim-iters", type=int, default=32, help="Griffin-Lim iterations per clip (default: 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verify_option(p)
    return p


def run(args) -> None:
    require_datasets()
    syn = load_synthetic(args.synthetic, verify=args.verify)
    evaluation = find_evaluation(args.synthetic, (syn.meta.get("source") or {}).get("sha256"), args.eval)
    command = "avdistill " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["export"] else None
    out = export_hf(syn, args.out, packed=args.packed, griffin_lim_iters=args.griffin_lim_iters, license=args.license,
                    evaluation=evaluation, command=command, progress=not args.quiet)
    found = f"accuracy from {evaluation['file']}" if evaluation else "no evaluation found next to the set"
    print(f"wrote {out} ({'packed' if args.packed else 'training'} pairs; card README.md, {found})")
