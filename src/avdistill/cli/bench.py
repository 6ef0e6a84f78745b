"""``avdistill bench``: the method x IPC x head grid, cached cell by cell, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdistill.cli.common import DATA_HELP, add_verify_option, device_option
from avdistill.config import (add_config_options, build_config, config_overrides, parse_assignment, parse_ints,
                              split_names)
from avdistill.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    from avdistill.evaluation import EvalConfig

    p = sub.add_parser("bench", help="run a benchmark grid and write a report",
                       description="Distil every method at every IPC (several synthetic sets each), evaluate every "
                                   "set with every head, train on the whole data per head, and write report.md, "
                                   "results.json and results.csv. Finished cells are cached: a rerun continues.")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--methods", default="random,dm", help="comma-separated methods (default: random,dm)")
    p.add_argument("--ipc", default="1,10", help="comma-separated IPC settings (default: 1,10)")
    p.add_argument("--heads", default="ensemble", help="comma-separated evaluation heads (default: ensemble)")
    p.add_argument("--sets", type=int, default=1, help="synthetic sets per method and IPC, seeds seed..seed+sets-1 (default: 1)")
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per set and head (default: 3)")
    p.add_argument("--whole-data-runs", type=int, default=1, help="runs on the whole training split per head; 0 skips (default: 1)")
    p.add_argument("--set", dest="method_settings", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method option, e.g. --set dm.iterations=100 (repeatable)")
    p.add_argument("--out", required=True, help="output folder (reused: finished cells are skipped)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--device", default="cpu", type=device_option, help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verify_option(p)
    add_config_options(p, EvalConfig, "evaluation protocol", skip=("head",))
    return p


def run(args) -> None:
    from avdistill.bench import BenchGrid, run_bench
    from avdistill.evaluation import EvalConfig
    from avdistill.methods import get_method

    methods = tuple(split_names(args.methods))
    options: dict[str, dict] = {}
    for item in args.method_settings:
        method, dot, assignment = item.partition(".")
        if not dot or method not in methods:
            raise ConfigError(f"--set {item!r}: expected METHOD.NAME=VALUE with METHOD one of {', '.join(methods)}")
        name, value = parse_assignment(assignment, get_method(method).config_class)
        options.setdefault(method, {})[name] = value
    ipcs = parse_ints(args.ipc, "--ipc")
    if args.sets < 1 or args.runs < 1 or args.whole_data_runs < 0:
        raise ConfigError("--sets and --runs must be >= 1 and --whole-data-runs >= 0")
    grid = BenchGrid(data=args.data, methods=methods, ipcs=ipcs, heads=tuple(split_names(args.heads)), sets=args.sets,
                     runs=args.runs, whole_data_runs=args.whole_data_runs, seed=args.seed, method_options=options,
                     eval_config=build_config(EvalConfig, config_overrides(args, EvalConfig)))
    run_bench(grid, args.out, args.device, not args.quiet, args.verify)
    print(Path(args.out, "report.md").read_text())
