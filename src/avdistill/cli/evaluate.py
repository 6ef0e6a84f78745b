"""``avdistill evaluate``: the AVDD protocol on synthetic sets and/or the whole data.

One accuracy table (rows: head, or encoder preset / head; columns: the sets) and, with
``--retrieval``, one retrieval table (rows: the sets). ``--json`` keeps every number with the
configs and versions; ``--csv`` one row per run and metric, for spreadsheets and plots.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from avdistill.cli.common import DATA_HELP, add_run_options, add_verify_option, load_data
from avdistill.cli.configfile import add_config_file_option
from avdistill.config import add_config_options, build_config, config_overrides, split_names, validate
from avdistill.errors import AVDistillError
from avdistill.evaluation import EvalConfig, RetrievalConfig, RetrievalResult, check_compatible
from avdistill.files import check_output_file, versions, write_json
from avdistill.grid.runner import Cell, run_cells, synthetic_file, whole_data
from avdistill.models.heads import HEAD_NAMES
from avdistill.reporting.results import csv_rows, write_csv
from avdistill.reporting.tables import accuracy_table, retrieval_table
from avdistill.synthetic import load_synthetic


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="train fresh networks on synthetic sets, test on the real test (or val) split",
                       description="AVDD evaluation protocol: fresh encoders + head per run, final-epoch top-1 "
                                   "accuracy on the real test split (--on val: the validation split, to make "
                                   "choices), mean ± std over runs; --steps N trains a fixed number of optimiser "
                                   "steps whatever the set's size; optionally cross-modal retrieval (R@1, R@5, "
                                   "median rank).")
    p.add_argument("synthetic", nargs="*", help="synthetic set files (synthetic.safetensors)")
    p.add_argument("--data", default="av-digits", help=DATA_HELP)
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per set, head and preset (default: 3)")
    p.add_argument("--whole-data", action="store_true", help="also train on the whole real training split (upper bound)")
    p.add_argument("--whole-data-runs", type=int, help="runs for the whole-data rows (default: --runs)")
    p.add_argument("--heads", type=split_names,
                   help="comma-separated fusion heads to evaluate: a,v,concat,sum,attention,ensemble (default: --head)")
    p.add_argument("--encoders", "--arch", dest="encoders", type=split_names,
                   help="comma-separated encoder presets to evaluate with, e.g. small,small-bn,resnet: "
                        "cross-architecture (default: --encoder; --arch is the old spelling)")
    p.add_argument("--retrieval", action="store_true", help="also measure cross-modal retrieval (see docs/EVALUATION.md)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy table (with --retrieval)")
    p.add_argument("--json", help="also write all numbers, configs and versions to this JSON file")
    p.add_argument("--csv", help="also write one row per run and metric to this CSV file")
    add_config_file_option(p)
    add_run_options(p)
    add_verify_option(p)
    add_config_options(p, EvalConfig, "evaluation protocol")
    add_config_options(p, RetrievalConfig, "retrieval protocol")
    return p


def run(args) -> None:
    if not args.synthetic and not args.whole_data:
        raise AVDistillError("nothing to evaluate: give synthetic set files and/or --whole-data")
    if args.no_accuracy and not args.retrieval:
        raise AVDistillError("--no-accuracy leaves nothing to do without --retrieval")
    for option, target in (("--json", args.json), ("--csv", args.csv)):
        if target:
            check_output_file(target, option)  # before hours of training, not after
    config = build_config(EvalConfig, config_overrides(args, EvalConfig))
    rconfig = build_config(RetrievalConfig, config_overrides(args, RetrievalConfig))
    heads, encoders = args.heads or [config.head], args.encoders or [config.encoder]
    for head, encoder in ((h, e) for h in heads for e in encoders):  # fail on a typo before hours of training
        validate(dataclasses.replace(config, head=head, encoder=encoder))
    whole_runs = args.whole_data_runs or args.runs
    dataset = load_data(args.data, args.verify)

    sets = []  # (column label, source, runs)
    for path in args.synthetic:
        syn = load_synthetic(path, verify=args.verify)
        check_compatible(syn, dataset, str(path))
        label = f"{syn.meta.get('method', Path(path).stem)} IPC {syn.ipc}"
        label = label if label not in [s[0] for s in sets] else f"{label} ({path})"
        sets.append((label, synthetic_file(syn, {"method": syn.meta.get("method"), "synthetic": str(path)}),
                     args.runs))
    if args.whole_data:
        sets.append(("Whole data", whole_data({"seed": args.seed}), whole_runs))

    def row(encoder: str, name: str) -> str:
        return name if len(encoders) == 1 else f"{encoder} / {name}"

    cells = []
    for encoder in encoders:
        for label, source, runs in sets:
            if not args.no_accuracy:
                cells += [Cell(row(encoder, HEAD_NAMES[head]), label, source, "accuracy",
                               dataclasses.replace(config, head=head, encoder=encoder), runs, args.seed)
                          for head in heads]
            if args.retrieval:
                cells.append(Cell("retrieval", label, source, "retrieval",
                                  dataclasses.replace(config, encoder=encoder), runs, args.seed,
                                  retrieval_config=rconfig))
    records = run_cells(cells, dataset, args.device, not args.quiet, "evaluate")

    accuracies: dict[str, dict[str, list[float]]] = {}
    retrievals = {}
    for record in records:
        if "accuracies" in record:
            accuracies.setdefault(record["table"], {})[record["row"]] = record["accuracies"]
            for branch, values in record.get("branch_accuracies", {}).items():  # the ensemble's A and V halves
                accuracies.setdefault(f"{record['table']}: {HEAD_NAMES[branch]} branch", {})[record["row"]] = values
        else:
            retrievals[row(record["settings"]["eval"]["encoder"], record["row"])] = RetrievalResult(record["retrieval"])
    if accuracies:
        print(accuracy_table(accuracies, [label for label, _, _ in sets], row_header="head"))
    if retrievals:
        print()
        print(retrieval_table(retrievals))
    if args.json:
        write_json(args.json, {"dataset": dataset.name, "dataset_sha256": dataset.checksum, "runs": args.runs,
                               "whole_data_runs": whole_runs, "seed": args.seed,
                               "eval_config": dataclasses.asdict(config),
                               "retrieval_config": dataclasses.asdict(rconfig) if args.retrieval else None,
                               "results": records, "versions": versions()})
    if args.csv:
        write_csv(args.csv, ("kind", "set", "encoder", "head", "run", "metric", "value"),
                  csv_rows(records, lambda r: ["retrieval" if "retrieval" in r else "accuracy", r["row"],
                                               r["settings"]["eval"]["encoder"]]))
