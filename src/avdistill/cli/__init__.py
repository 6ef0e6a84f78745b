"""The ``avdistill`` command. One module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import os
import sys

from avdistill.cli import bench, demo, distill, evaluate, export, prepare, show, tune
from avdistill.cli.common import OptionParser
from avdistill.cli.configfile import apply_config_file, read_config_file
from avdistill.errors import AVDistillError, ConfigError
from avdistill.evaluation import EvalConfig, RetrievalConfig

# Commands whose options include a method's, parsed (and checked, from a --config file) once the method is known.
METHOD_COMMANDS = ("distill", "tune")


def build_parser() -> tuple[OptionParser, dict[str, OptionParser]]:
    parser = OptionParser(prog="avdistill", description="Audio-visual dataset distillation.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {name: module.add_parser(sub) for name, module in
                (("prepare", prepare), ("distill", distill), ("evaluate", evaluate), ("show", show),
                                          ("export", export), ("bench", bench), ("tune", tune), ("demo", demo))}
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        args.file_options, args.config_checksum = {}, None
        if getattr(args, "config", None):
            args, rest = _with_config_file(parser, commands[args.command], args, argv)
        if args.command in METHOD_COMMANDS:  # method options are parsed once the method is known
            {"distill": distill.run, "tune": tune.run}[args.command](args, rest, commands[args.command])
            return 0
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        {"prepare": prepare.run, "evaluate": evaluate.run, "show": show.run, "export": export.run,
         "bench": bench.run, "demo": demo.run}[args.command](args)
    except AVDistillError as exc:
        _say(f"avdistill: error{_process()}: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("avdistill: interrupted (a rerun with the same --out resumes from the last checkpoint)")
        return 130
    return 0


def _say(line: str) -> None:
    """`line` on stderr in one write: stderr is unbuffered, so print's separate write of the newline would let
    the processes of a torchrun run, which share the pipe, merge their lines into one."""
    sys.stderr.write(line + "\n")


def _with_config_file(parser, command_parser, args, argv):
    """Parse again with the --config file's values as defaults; flags on the command line override them."""
    path = args.config
    values, checksum = read_config_file(path)
    classes = {"evaluate": (EvalConfig, RetrievalConfig), "bench": (EvalConfig, RetrievalConfig)}.get(args.command, ())
    extra = apply_config_file(command_parser, values, path, classes)
    if extra and args.command not in METHOD_COMMANDS:
        valid = sorted(a.dest.removeprefix("cfg_") for a in command_parser._actions if a.dest not in ("help", "config"))
        raise ConfigError(f"{path}: unknown key(s) {', '.join(map(repr, sorted(extra)))} for avdistill {args.command} "
                          f"(valid: {', '.join(valid)})")
    args, rest = parser.parse_known_args(argv)
    args.file_options, args.config_checksum = extra, checksum
    return args, rest


def _process() -> str:
    """Which process failed, under torchrun (each process reports its own error)."""
    size = os.environ.get("WORLD_SIZE", "1")
    return f" (process {os.environ.get('RANK', '?')} of {size})" if size not in ("", "1") else ""


if __name__ == "__main__":
    sys.exit(main())
