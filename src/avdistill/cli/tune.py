"""``avdistill tune``: search a method's options on the validation split (Optuna: TPE, median pruning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avdistill.cli.common import (DATA_HELP, OptionParser, add_budget_options, add_run_options, add_verify_option,
                                  check_data_checksum, load_data, resolve_budget)
from avdistill.cli.configfile import add_config_file_option, check_file_options
from avdistill.config import add_config_options, build_config, config_overrides, flat_fields, parse_assignment
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig
from avdistill.methods import METHODS, get_method
from avdistill.methods.watch import parse_duration
from avdistill.searchspace import parse_space
from avdistill.spread import mean_std


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", add_help=False, help="search a method's settings on the validation split (Optuna)",
                       description="Search the options a method declares search ranges for (`avdistill tune --method "
                                   "NAME --help` lists them) on the validation split: TPE with a fixed seed, trials "
                                   "that lag at an intermediate check are pruned. Trials are stored in a database: a "
                                   "rerun continues the study, and several processes can share it. Method options "
                                   "given as flags are held fixed. The test split is never read.")
    p.add_argument("-h", "--help", action="store_true", help="show this help (with the chosen method's options)")
    p.add_argument("--method", default="dm", choices=sorted(METHODS), help="method to tune (default: dm)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--ipc", type=int, default=10, help="synthetic pairs per class (default: 10)")
    p.add_argument("--trials", type=int, default=20,
                   help="finished (complete or pruned) trials the study should have, counting earlier runs'; 0: run "
                        "none, only write the outputs from the database (default: 20)")
    p.add_argument("--space", action="append", default=[], metavar="NAME=LOW:HIGH[:log]",
                   help="search NAME in [LOW, HIGH] (log-uniform with :log), or among NAME=A,B,...; replaces the "
                        "declared range (repeatable)")
    p.add_argument("--runs", type=int, default=2, help="validation runs that score a finished trial (default: 2)")
    p.add_argument("--checks", type=int, default=2,
                   help="intermediate validation checks per trial, where lagging trials are pruned; 0: no pruning "
                        "(default: 2)")
    p.add_argument("--defaults-trial", action=argparse.BooleanOptionalAction, default=True,
                   help="run the method's defaults as the study's first trial, the baseline the best is compared "
                        "with on the validation split (default: on)")
    p.add_argument("--time-budget", metavar="DURATION", help="start no trial after this much wall time, e.g. 20m")
    p.add_argument("--out", default="runs/tune",
                   help="output folder: trials, best.toml, report.md, trials.csv (default: runs/tune)")
    p.add_argument("--storage", help="study database: an SQLite file or a database URL, e.g. "
                                     "postgresql://host/db, shared by every process of the study "
                                     "(default: OUT/study.db)")
    p.add_argument("--study-name", help="name of the study in the database (default: METHOD-ipcIPC)")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="seconds between a running trial's heartbeats; a trial silent for 3 of them (its process "
                        "died) is marked failed and its settings run again (default: 60)")
    add_budget_options(p)
    add_config_file_option(p)
    add_run_options(p)
    add_verify_option(p)
    p.add_argument("--eval", action="append", default=[], metavar="NAME=VALUE",
                   help="an option of the evaluation protocol on the validation split, e.g. --eval epochs=30 "
                        f"(repeatable; names: {', '.join(flat_fields(EvalConfig))})")
    return p


def run(args, method_args: list[str], parser: argparse.ArgumentParser) -> None:
    from avdistill import tuning  # heavy (Optuna, SQLAlchemy: 0.6 s): imported when tune runs, not by every command

    spec = get_method(args.method)
    if args.help:
        add_config_options(parser, spec.config_class, f"{args.method} options (given: held fixed)")
        parser.print_help()
        return
    if args.ipc < 1 or args.trials < 0 or args.runs < 1 or args.checks < 0 or args.heartbeat < 1:
        raise ConfigError("--ipc, --runs and --heartbeat must be >= 1, --trials and --checks >= 0")
    method_parser = OptionParser(prog=f"avdistill tune --method {args.method}", add_help=False)
    add_config_options(method_parser, spec.config_class, f"{args.method} options")
    fixed = {**check_file_options(args.file_options, spec.config_class, args.config,
                                  f"avdistill tune --method {args.method}"),
             **config_overrides(method_parser.parse_args(method_args), spec.config_class)}
    space = dict(parse_space(text, spec.config_class) for text in args.space)
    time_budget = parse_duration(args.time_budget) if args.time_budget else None
    setup = tuning.TuneSetup(method=args.method, ipc=args.ipc, trials=args.trials, seed=args.seed,
                      budget=resolve_budget(args, spec, True), fixed=fixed, space=space, runs=args.runs,
                      checks=args.checks,
                      eval_config=build_config(EvalConfig, {"on": "val", **dict(parse_assignment(a, EvalConfig)
                                                                                for a in args.eval)}),
                      heartbeat=args.heartbeat, defaults_first=args.defaults_trial)
    if setup.eval_config.on != "val":
        raise ConfigError("tune scores trials on the validation split only (--eval on=val); the test split is read "
                          "once, by avdistill evaluate, after tuning")
    if not setup.search_space():
        raise ConfigError(f"nothing to search: {args.method} declares no search ranges"
                          + (" outside the options held fixed" if fixed else "") + "; add some with --space")
    out = Path(args.out)
    dataset = load_data(args.data, args.verify)
    check_data_checksum(args, dataset)
    dataset.split("val")  # a clear error now if the dataset has no validation split
    url = tuning.storage_url(args.storage, out)
    study = tuning.open_study(setup, dataset, url, args.study_name or f"{args.method}-ipc{args.ipc}")
    print(f"study {study.study_name!r} in {url}: searching {', '.join(f'{k} in {v}' for k, v in setup.search_space().items())}",
          flush=True)
    reason = tuning.run_study(study, setup, dataset, out, args.device, time_budget, not args.quiet)
    paths = tuning.write_outputs(study, setup, args.data, out, reason)
    print(f"{reason}; report: {paths['report']}, every trial: {paths['csv']}")
    if "best" in paths:
        best = study.best_trial
        print(f"best: trial {best.number}, validation accuracy "
              f"{mean_std(best.user_attrs.get('val_accuracies', [best.value]))} %; settings: {paths['best']}")
        print("next (the test split is read only here):")
        for command in tuning.next_commands(best, setup, args.data, out):
            print(f"  {command}")
