"""``avdistill distill``: run one method; its options come from the method's config dataclass."""

from __future__ import annotations

import argparse

from avdistill import distributed
from avdistill.cli.common import DATA_HELP, OptionParser, add_run_options, add_verify_option, load_data
from avdistill.config import add_config_options, config_overrides
from avdistill.methods import METHODS, distill, get_method
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
    add_run_options(p)
    add_verify_option(p)
    return p


def run(args, method_args: list[str], parser: argparse.ArgumentParser) -> None:
    spec = get_method(args.method)
    if args.help:  # show the generic options and the chosen method's own
        add_config_options(parser, spec.config_class, f"{args.method} options")
        parser.print_help()
        return
    method_parser = OptionParser(prog=f"avdistill distill --method {args.method}", add_help=False)
    add_config_options(method_parser, spec.config_class, f"{args.method} options")
    options = config_overrides(method_parser.parse_args(method_args), spec.config_class)
    dataset = load_data(args.data, args.verify)
    syn = distill(dataset, args.method, args.ipc, args.seed, args.out, args.device, not args.quiet, **options)
    if distributed.rank() == 0:  # under torchrun, once
        print(f"{args.method}: {len(syn.labels)} pairs ({syn.ipc} per class) in {syn.meta['wall_seconds']:.1f} s "
              f"-> {RunFolder(args.out).synthetic}")
