"""``avdistill demo``: the main job on the embedded AV-Digits dataset."""

from __future__ import annotations

import argparse

from avdistill.cli.common import add_run_options
from avdistill.config import parse_ints
from avdistill.demo import run_demo
from avdistill.evaluation import EvalConfig
from avdistill.methods.dm import DMConfig


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="the main job on the embedded AV-Digits dataset",
                       description="Distil AV-Digits with DM at IPC 1 and 10, evaluate against random real "
                                   "subsets and whole data, print the table, write everything under --out.")
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--ipc", default="1,10", help="comma-separated IPC settings (default: 1,10)")
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per synthetic set (default: 3)")
    p.add_argument("--whole-data-runs", type=int, default=1, help="evaluation runs on the whole data (default: 1)")
    p.add_argument("--iterations", type=int, help="DM iterations (default: the DM default)")
    p.add_argument("--epochs", type=int, help="evaluation epochs (default: 30, as AVDD)")
    add_run_options(p)
    return p


def run(args) -> None:
    dm = DMConfig(iterations=args.iterations) if args.iterations is not None else DMConfig()
    evaluation = EvalConfig(epochs=args.epochs) if args.epochs is not None else EvalConfig()
    run_demo(args.out, parse_ints(args.ipc, "--ipc"), args.runs, args.whole_data_runs, dm, evaluation, args.seed,
             args.device, not args.quiet)
