"""``avdistill show``: pictures, WAVs and short videos of a synthetic set."""

from __future__ import annotations

import argparse

from avdistill.cli.common import add_verify_option, load_data
from avdistill.evaluation import check_compatible
from avdistill.reporting.show import show
from avdistill.synthetic import load_synthetic


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("show", help="export a synthetic set as pictures, WAV files and mp4 clips",
                       description="Per-class grids of the distilled frames and spectrograms (PNG), each distilled "
                                   "spectrogram inverted to sound (WAV, Griffin-Lim), and each pair as a 1-s mp4.")
    p.add_argument("synthetic", help="synthetic set file (synthetic.safetensors)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--before", help="another synthetic set to show beside it, e.g. the initialisation "
                                    "(for DM with init=real this is `distill --method random` with the same seed and ipc)")
    p.add_argument("--data", help="the source dataset ('av-digits' or a path): adds a PCA plot of real vs synthetic "
                                  "embeddings")
    p.add_argument("--no-video", action="store_true", help="skip the mp4 clips")
    p.add_argument("--griffin-lim-iters", type=int, default=32, help="Griffin-Lim iterations per clip (default: 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verify_option(p)
    return p


def run(args) -> None:
    syn = load_synthetic(args.synthetic, verify=args.verify)
    before = load_synthetic(args.before, verify=args.verify) if args.before else None
    dataset = None
    if args.data:
        dataset = load_data(args.data, args.verify)
        check_compatible(syn, dataset, args.synthetic)
    written = show(syn, args.out, before, not args.no_video, args.griffin_lim_iters, not args.quiet, dataset)
    pictures = ", ".join(written[k] for k in ("frames", "spectrograms", "losses", "embeddings") if k in written)
    print(f"wrote {pictures}, {len(written['audio'])} WAV and "
          f"{len(written['video'])} mp4 files under {args.out}")
