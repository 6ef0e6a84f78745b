"""``avdistill distill``: run one method; its options come from the method's config dataclass."""

from __future__ import annotations

import argparse

from avdistill import distributed
from avdistill.cli.common import (DATA_HELP, OptionParser, add_budget_options, add_run_options, add_verify_option,
                                  check_data_checksum, load_data, resolve_budget)
from avdistill.cli.configfile import add_config_file_option, check_file_options
from avdistill.config import add_config_options, config_overrides
from avdistill.methods import METHODS, distill, get_method
from avdistill.methods.watch import Watch, parse_duration
from avdistill.run_folder import RunFolder


def add_parser(sub) -> argparse.ArgumentParser:
    methods = "; ".join(f"{name}: {spec.summary}" for name, spec in sorted(METHODS.items()))
    p = sub.add_parser("distill", help="distil a dataset into IPC synthetic pairs per class",
                       description="Distil a dataset. Method options: `avdistill distill --method NAME --help`.",
                       add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with the chosen method's options)")
    p.add_argument("--method", default="dm", choices=sorted(METHODS), help=f"{methods} (default: dm)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--ipc", type=int, default=10, help="synthetic pairs per class (default: 10)")
    p.add_argument("--out", default="runs/distill",
                   help="output folder: synthetic set, loss log, checkpoints (default: runs/distill)")
    add_budget_options(p)
    p.add_argument("--time-budget", metavar="DURATION",
                   help="stop after the last checkpoint the run can reach within this wall time (e.g. 10m, 1.5h); "
                        "synthetic.json records the stop, and a rerun with the same --out continues from it")
    add_config_file_option(p)
    add_run_options(p)
    add_verify_option(p)
    return p


def run(args, method_args: list[str], parser: argparse.ArgumentParser) -> None:
    watch = Watch(announce=not args.quiet)  # the time budget counts from here: loading the data is part of the run
    spec = get_method(args.method)
    if args.help:  # show the generic options and the chosen method's own
        add_config_options(parser, spec.config_class, f"{args.method} options")
        parser.print_help()
        return
    method_parser = OptionParser(prog=f"avdistill distill --method {args.method}", add_help=False)
    add_config_options(method_parser, spec.config_class, f"{args.method} options")
    options = {**check_file_options(args.file_options, spec.config_class, args.config,
                                    f"avdistill distill --method {args.method}"),
               **config_overrides(method_parser.parse_args(method_args), spec.config_class)}
    watch.time_limit = parse_duration(args.time_budget) if args.time_budget else None
    budget = resolve_budget(args, spec, distributed.rank() == 0)
    dataset = load_data(args.data, args.verify)
    check_data_checksum(args, dataset)
    syn = distill(dataset, args.method, args.ipc, args.seed, args.out, args.device, not args.quiet, budget=budget,
                  watch=watch, **options)
    if distributed.rank() == 0:  # under torchrun, once
        stopped = syn.meta.get("stopped")
        print(f"{args.method}: {len(syn.labels)} pairs ({syn.ipc} per class) in {syn.meta['wall_seconds']:.1f} s "
              f"-> {RunFolder(args.out).synthetic}"
              + (f"; stopped by the time budget after {stopped['iterations_done']} iterations" if stopped else ""))
