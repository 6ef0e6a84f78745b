"""``avdistill bench``: the method x IPC x head grid, cached cell by cell, with a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from avdistill.cli.common import DATA_HELP, add_budget_options, add_verify_option, device_option, resolve_budget
from avdistill.cli.configfile import add_config_file_option
from avdistill.config import (add_config_options, build_config, config_overrides, parse_assignment, parse_ints,
                              split_names)
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig, RetrievalConfig
from avdistill.grid.bench import BenchGrid, run_bench
from avdistill.methods import get_method
from avdistill.methods.budgets import budget_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="run a benchmark grid and write a report",
                       description="Distil every method at every IPC (several synthetic sets each), evaluate every "
                                   "set with every head, train on the whole data per head, and write report.md "
                                   "(main A/V/AV table, fusion study, ablations, retrieval, pictures and sound), "
                                   "results.json and results.csv. Finished cells are cached: a rerun continues.")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--methods", default="random,dm", help="comma-separated methods (default: random,dm)")
    p.add_argument("--ipc", default="1,10", help="comma-separated IPC settings (default: 1,10)")
    p.add_argument("--heads", default="ensemble", help="comma-separated evaluation heads (default: ensemble)")
    p.add_argument("--sets", type=int, default=3, help="synthetic sets per method and IPC, seeds seed..seed+sets-1 "
                                                        "(default: 3, the papers' protocol)")
    p.add_argument("--runs", type=int, default=5,
                   help="evaluation runs per set and head (default: 5, the papers' protocol)")
    p.add_argument("--whole-data-runs", type=int, default=1, help="runs on the whole training split per head; 0 skips (default: 1)")
    p.add_argument("--method-option", "--set", dest="method_settings", action="append", default=[],
                   metavar="METHOD.NAME=VALUE", help="a method option, e.g. --method-option dm.iterations=100 "
                                                     "(repeatable; --set is the old spelling)")
    p.add_argument("--ablations", default="", help="comma-separated methods whose declared ablation rows to run, "
                                                   "e.g. avdd (evaluated with the AV head)")
    p.add_argument("--retrieval", action="store_true", help="also measure cross-modal retrieval on every set")
    p.add_argument("--no-pictures", action="store_true", help="no pictures or sound in the report")
    p.add_argument("--picture-ipc", type=int, default=0, help="IPC of the pictures (default: the largest)")
    p.add_argument("--clips-per-class", type=int, default=1,
                   help="WAV/mp4 files per class and synthesis method in the report (default: 1)")
    p.add_argument("--no-video", action="store_true", help="WAV files only, no mp4 clips")
    p.add_argument("--griffin-lim-iters", type=int, default=32, help="Griffin-Lim iterations per clip (default: 32)")
    p.add_argument("--out", help="output folder (reused: finished cells are skipped); required")
    p.add_argument("--report", help="folder of report.md, results and pictures (default: --out), e.g. to "
                                    "commit the report without the cache")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--device", default="cpu", type=device_option, help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_budget_options(p)
    add_config_file_option(p)
    add_verify_option(p)
    add_config_options(p, EvalConfig, "evaluation protocol", skip=("head",))
    add_config_options(p, RetrievalConfig, "retrieval protocol")
    return p


def run(args) -> None:
    if not args.out:
        raise ConfigError("avdistill bench: --out is required (on the command line or in the --config file)")
    methods = tuple(split_names(args.methods))
    ablations = tuple(split_names(args.ablations)) if args.ablations else ()
    for method in (*methods, *ablations):
        get_method(method)
    options: dict[str, dict] = {}
    for item in args.method_settings:
        method, dot, assignment = item.partition(".")
        if not dot or method not in (*methods, *ablations):
            raise ConfigError(f"--method-option {item!r}: expected METHOD.NAME=VALUE with METHOD one of "
                              f"{', '.join(dict.fromkeys((*methods, *ablations)))}")
        name, value = parse_assignment(assignment, get_method(method).config_class)
        options.setdefault(method, {})[name] = value
    for method in dict.fromkeys((*methods, *ablations)):  # the budget's values, under the options given
        spec = get_method(method)
        budgeted = budget_options(spec, resolve_budget(args, spec, announce=not args.quiet))
        given = options.get(method, {})
        overridden = {k: v for k, v in given.items() if budgeted.get(k, v) != v}
        if overridden and not args.quiet:
            print(f"{method}: --method-option overrides the budget: "
                  + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in overridden.items()), flush=True)
        options[method] = {**budgeted, **given}
    ipcs = parse_ints(args.ipc, "--ipc")
    if args.sets < 1 or args.runs < 1 or args.whole_data_runs < 0 or args.clips_per_class < 0:
        raise ConfigError("--sets and --runs must be >= 1, --whole-data-runs and --clips-per-class >= 0")
    grid = BenchGrid(data=args.data, methods=methods, ipcs=ipcs, heads=tuple(split_names(args.heads)), sets=args.sets,
                     runs=args.runs, whole_data_runs=args.whole_data_runs, seed=args.seed, method_options=options,
                     eval_config=build_config(EvalConfig, config_overrides(args, EvalConfig)),
                     ablations=ablations, retrieval=args.retrieval,
                     retrieval_config=build_config(RetrievalConfig, config_overrides(args, RetrievalConfig)),
                     pictures=not args.no_pictures, picture_ipc=args.picture_ipc,
                     clips_per_class=args.clips_per_class, videos=not args.no_video,
                     griffin_lim_iters=args.griffin_lim_iters)
    command = "avdistill " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    run_bench(grid, args.out, args.device, not args.quiet, args.report, command, args.verify)
    print(Path(args.report or args.out, "report.md").read_text())
