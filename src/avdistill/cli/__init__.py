"""The ``avdistill`` command. One module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import os
import sys

from avdistill.cli import bench, demo, distill, evaluate, export, prepare, show
from avdistill.cli.common import OptionParser
from avdistill.errors import AVDistillError


def build_parser() -> tuple[OptionParser, dict[str, OptionParser]]:
    parser = OptionParser(prog="avdistill", description="Audio-visual dataset distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {name: module.add_parser(sub) for name, module in
                (("prepare", prepare), ("distill", distill), ("evaluate", evaluate), ("show", show),
                                          ("export", export), ("bench", bench), ("demo", demo))}
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.command == "distill":  # method options are parsed once the method is known
            distill.run(args, rest, commands["distill"])
            return 0
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        {"prepare": prepare.run, "evaluate": evaluate.run, "show": show.run, "export": export.run,
         "bench": bench.run, "demo": demo.run}[args.command](args)
    except AVDistillError as exc:
        print(f"avdistill: error{_process()}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avdistill: interrupted (a rerun with the same --out resumes from the last checkpoint)", file=sys.stderr)
        return 130
    return 0


def _process() -> str:
    """Which process failed, under torchrun (each process reports its own error)."""
    size = os.environ.get("WORLD_SIZE", "1")
    return f" (process {os.environ.get('RANK', '?')} of {size})" if size not in ("", "1") else ""


if __name__ == "__main__":
    sys.exit(main())
