"""Options several commands share."""

from __future__ import annotations

import argparse

DATA_HELP = "dataset: 'av-digits' (embedded), a prepared .safetensors file, or an AVDD .pt file (default: av-digits)"


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same result on CPU (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
