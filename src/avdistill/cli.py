"""The ``avdistill`` command: prepare, distill, evaluate, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avdistill.config import add_config_options, build_config, config_overrides
from avdistill.errors import AVDistillError

DATA_HELP = "dataset: 'av-digits' (embedded), a prepared .safetensors file, or an AVDD .pt file (default: av-digits)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same result on CPU (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_prepare(args) -> None:
    from avdistill.data import load_avdd, save_dataset

    classes = args.classes.split(",") if args.classes else None
    dataset = load_avdd(args.train, args.test, classes=classes, name=args.name)
    save_dataset(dataset, args.out)
    print(dataset.describe())
    print(f"wrote {args.out}")


def cmd_distill(args, method_args: list[str]) -> None:
    from avdistill.data import load_dataset
    from avdistill.methods import SYNTHETIC_FILE, distill, get_method

    spec = get_method(args.method)
    parser = argparse.ArgumentParser(prog=f"avdistill distill --method {args.method}", add_help=False)
    add_config_options(parser, spec.config_class, f"{args.method} options")
    method_opts = parser.parse_args(method_args)
    dataset = load_dataset(args.data)
    options = config_overrides(method_opts, spec.config_class)
    syn = distill(dataset, args.method, args.ipc, args.seed, args.out, args.device, not args.quiet, **options)
    print(f"{args.method}: {len(syn.labels)} pairs ({syn.ipc} per class) in {syn.meta['wall_seconds']:.1f} s "
          f"-> {Path(args.out) / SYNTHETIC_FILE}")


def cmd_evaluate(args) -> None:
    from avdistill.data import load_dataset
    from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
    from avdistill.io import versions, write_json
    from avdistill.reporting.tables import accuracy_table
    from avdistill.synthetic import load_synthetic

    if not args.synthetic and not args.whole_data:
        raise AVDistillError("nothing to evaluate: give synthetic set files and/or --whole-data")
    config = build_config(EvalConfig, config_overrides(args, EvalConfig))
    dataset = load_dataset(args.data)
    results, records = {}, []
    for path in args.synthetic:
        syn = load_synthetic(path)
        result = evaluate(syn, dataset, args.runs, args.seed, config, args.device, not args.quiet)
        name = f"{syn.meta.get('method', Path(path).stem)} ({path})"
        results[name] = {f"IPC {syn.ipc}": result.accuracies}
        records.append({"synthetic": str(path), "meta": syn.meta, "accuracies": result.accuracies})
    if args.whole_data:
        result = evaluate_whole_data(dataset, args.runs, args.seed, config, args.device, not args.quiet)
        results["Whole data"] = {"all": result.accuracies}
        records.append({"synthetic": None, "whole_data": True, "accuracies": result.accuracies})
    columns = sorted({c for r in results.values() for c in r}, key=lambda c: (c == "all", c))
    print(accuracy_table(results, columns))
    if args.json:
        from dataclasses import asdict

        write_json(args.json, {"dataset": dataset.name, "dataset_sha256": dataset.checksum, "runs": args.runs,
                               "seed": args.seed, "eval_config": asdict(config), "results": records,
                               "versions": versions()})


def cmd_demo(args) -> None:
    from avdistill.demo import run_demo
    from avdistill.evaluation import EvalConfig
    from avdistill.methods.dm import DMConfig

    dm = DMConfig(iterations=args.iterations) if args.iterations is not None else DMConfig()
    evaluation = EvalConfig(epochs=args.epochs) if args.epochs is not None else EvalConfig()
    ipcs = tuple(int(x) for x in args.ipc.split(","))
    run_demo(args.out, ipcs, args.runs, args.whole_data_runs, dm, evaluation, args.seed, args.device, not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    from avdistill.evaluation import EvalConfig
    from avdistill.methods import METHODS

    parser = argparse.ArgumentParser(prog="avdistill", description="Audio-visual dataset distillation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="convert AVDD .pt files into a prepared dataset",
                       description="Convert AVDD .pt tensors (audio_train, images_train, labels_train and the _test keys) "
                                   "into avdistill's pickle-free, memory-mappable .safetensors dataset.")
    p.add_argument("train", help="AVDD .pt with the *_train keys (and possibly the *_test keys)")
    p.add_argument("test", nargs="?", help="AVDD .pt with the *_test keys, if they live in a separate file")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--name", help="dataset name (default: the train file's stem)")
    p.add_argument("--classes", help="comma-separated class names in label order (default: from the file, or class_0..)")

    methods = "; ".join(f"{name}: {spec.summary}" for name, spec in sorted(METHODS.items()))
    p = sub.add_parser("distill", help="distil a dataset into IPC synthetic pairs per class",
                       description="Distil a dataset. Method options: run `avdistill distill --method NAME --help`.",
                       add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with the chosen method's options)")
    p.add_argument("--method", default="dm", choices=sorted(METHODS), help=f"{methods} (default: dm)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--ipc", type=int, default=10, help="synthetic pairs per class (default: 10)")
    p.add_argument("--out", default="runs/distill", help="output folder: synthetic set, loss log, checkpoints (default: runs/distill)")
    _common(p)

    p = sub.add_parser("evaluate", help="train fresh networks on synthetic sets, test on the real test split",
                       description="AVDD evaluation protocol: fresh encoders + head per run, final-epoch top-1 "
                                   "accuracy on the real test split, mean ± std over runs.")
    p.add_argument("synthetic", nargs="*", help="synthetic set files (synthetic.safetensors)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per set (default: 3)")
    p.add_argument("--whole-data", action="store_true", help="also train on the whole real training split (upper bound)")
    p.add_argument("--json", help="also write all accuracies, configs and versions to this JSON file")
    _common(p)
    add_config_options(p, EvalConfig, "evaluation protocol")

    p = sub.add_parser("demo", help="the main job on the embedded AV-Digits dataset",
                       description="Distil AV-Digits with DM at IPC 1 and 10, evaluate against random real "
                                   "subsets and whole data, print the table, write everything under --out.")
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--ipc", default="1,10", help="comma-separated IPC settings (default: 1,10)")
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per synthetic set (default: 3)")
    p.add_argument("--whole-data-runs", type=int, default=1, help="evaluation runs on the whole data (default: 1)")
    p.add_argument("--iterations", type=int, help="DM iterations (default: the DM default)")
    p.add_argument("--epochs", type=int, help="evaluation epochs (default: 30, as AVDD)")
    _common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "distill":
            if args.help:
                _distill_help(parser, args.method)
                return 0
            cmd_distill(args, rest)
            return 0
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        {"prepare": cmd_prepare, "evaluate": cmd_evaluate, "demo": cmd_demo}[args.command](args)
    except AVDistillError as exc:
        print(f"avdistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avdistill: interrupted (a rerun with the same --out resumes from the last checkpoint)", file=sys.stderr)
        return 130
    return 0


def _distill_help(parser: argparse.ArgumentParser, method: str) -> None:
    from avdistill.methods import get_method

    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["distill"]
    add_config_options(sub, get_method(method).config_class, f"{method} options")
    sub.print_help()


if __name__ == "__main__":
    sys.exit(main())
