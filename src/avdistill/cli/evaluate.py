"""``avdistill evaluate``: the AVDD protocol on synthetic sets and/or the whole data."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from avdistill.cli.common import DATA_HELP, add_run_options
from avdistill.config import add_config_options, build_config, config_overrides
from avdistill.errors import AVDistillError


def add_parser(sub) -> argparse.ArgumentParser:
    from avdistill.evaluation import EvalConfig

    p = sub.add_parser("evaluate", help="train fresh networks on synthetic sets, test on the real test split",
                       description="AVDD evaluation protocol: fresh encoders + head per run, final-epoch top-1 "
                                   "accuracy on the real test split, mean ± std over runs.")
    p.add_argument("synthetic", nargs="*", help="synthetic set files (synthetic.safetensors)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per set (default: 3)")
    p.add_argument("--whole-data", action="store_true", help="also train on the whole real training split (upper bound)")
    p.add_argument("--json", help="also write all accuracies, configs and versions to this JSON file")
    add_run_options(p)
    add_config_options(p, EvalConfig, "evaluation protocol")
    return p


def run(args) -> None:
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
        results[f"{syn.meta.get('method', Path(path).stem)} ({path})"] = {f"IPC {syn.ipc}": result.accuracies}
        records.append({"synthetic": str(path), "meta": syn.meta, "accuracies": result.accuracies})
    if args.whole_data:
        result = evaluate_whole_data(dataset, args.runs, args.seed, config, args.device, not args.quiet)
        results["Whole data"] = {"all": result.accuracies}
        records.append({"synthetic": None, "whole_data": True, "accuracies": result.accuracies})
    columns = sorted({c for r in results.values() for c in r}, key=lambda c: (c == "all", c))
    print(accuracy_table(results, columns))
    if args.json:
        write_json(args.json, {"dataset": dataset.name, "dataset_sha256": dataset.checksum, "runs": args.runs,
                               "seed": args.seed, "eval_config": asdict(config), "results": records,
                               "versions": versions()})
