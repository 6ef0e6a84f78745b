"""``avdistill evaluate``: the AVDD protocol on synthetic sets and/or the whole data.

One accuracy table (rows: head, or encoder preset / head; columns: the sets) and, with
``--retrieval``, one retrieval table (rows: the sets). ``--json`` keeps every number with the
configs and versions; ``--csv`` one row per run and metric, for spreadsheets and plots.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

from avdistill.cli.common import DATA_HELP, add_run_options, add_verify_option
from avdistill.cli.configfile import add_config_file_option
from avdistill.config import add_config_options, build_config, config_overrides, split_names
from avdistill.errors import AVDistillError, ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    from avdistill.evaluation import EvalConfig, RetrievalConfig

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
    p.add_argument("--arch", type=split_names,
                   help="comma-separated encoder presets to evaluate with, e.g. small,small-bn,resnet (default: --encoder)")
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
    from avdistill.cli.common import load_data
    from avdistill.evaluation import (EvalConfig, RetrievalConfig, check_compatible, evaluate, evaluate_whole_data,
                                      retrieval)
    from avdistill.evaluation.protocol import check_eval_config
    from avdistill.evaluation.retrieval import check_retrieval_config
    from avdistill.io import atomic_path, check_output_file, versions, write_json
    from avdistill.models import PRESETS
    from avdistill.models.heads import HEAD_NAMES
    from avdistill.reporting.tables import accuracy_table, retrieval_table
    from avdistill.synthetic import load_synthetic

    if not args.synthetic and not args.whole_data:
        raise AVDistillError("nothing to evaluate: give synthetic set files and/or --whole-data")
    if args.no_accuracy and not args.retrieval:
        raise AVDistillError("--no-accuracy leaves nothing to do without --retrieval")
    for option, target in (("--json", args.json), ("--csv", args.csv)):
        if target:
            check_output_file(target, option)  # before hours of training, not after
    config = build_config(EvalConfig, config_overrides(args, EvalConfig))
    rconfig = build_config(RetrievalConfig, config_overrides(args, RetrievalConfig))
    heads, archs = args.heads or [config.head], args.arch or [config.encoder]
    for head, arch in ((h, a) for h in heads for a in archs):  # fail on a typo before hours of training
        check_eval_config(dataclasses.replace(config, head=head, encoder=arch))
        if arch not in PRESETS:
            raise ConfigError(f"unknown encoder preset {arch!r}; choose from {', '.join(PRESETS)}")
    if args.retrieval:
        check_retrieval_config(rconfig)
    whole_runs = args.whole_data_runs or args.runs
    dataset = load_data(args.data, args.verify)

    sets: list[tuple[str, object, int]] = []  # (column label, synthetic set or None = whole data, runs)
    for path in args.synthetic:
        syn = load_synthetic(path, verify=args.verify)
        check_compatible(syn, dataset, str(path))
        label = f"{syn.meta.get('method', Path(path).stem)} IPC {syn.ipc}"
        sets.append((label if label not in [s[0] for s in sets] else f"{label} ({path})", syn, args.runs))
    if args.whole_data:
        sets.append(("Whole data", None, whole_runs))

    accuracies: dict[str, dict[str, list[float]]] = {}
    retrievals: dict[str, object] = {}
    records, rows = [], []
    for arch in archs:
        for label, syn, runs in sets:
            source = syn.path if syn is not None else None
            if not args.no_accuracy:
                for head in heads:
                    cfg = dataclasses.replace(config, head=head, encoder=arch)
                    if syn is None:
                        result = evaluate_whole_data(dataset, runs, args.seed, cfg, args.device, not args.quiet)
                    else:
                        result = evaluate(syn, dataset, runs, args.seed, cfg, args.device, not args.quiet)
                    row = HEAD_NAMES[head] if len(archs) == 1 else f"{arch} / {HEAD_NAMES[head]}"
                    accuracies.setdefault(row, {})[label] = result.accuracies
                    records.append({"kind": "accuracy", "set": label, "synthetic": source, "arch": arch,
                                    "head": head, "accuracies": result.accuracies, "config": result.config})
                    rows += [("accuracy", label, arch, head, r, "top1", acc) for r, acc in enumerate(result.accuracies)]
            if args.retrieval:
                cfg = dataclasses.replace(config, encoder=arch)
                result = retrieval(syn, dataset, runs, args.seed, cfg, rconfig, args.device, not args.quiet)
                retrievals[label if len(archs) == 1 else f"{arch} / {label}"] = result
                records.append({"kind": "retrieval", "set": label, "synthetic": source, "arch": arch,
                                "runs": result.runs, "config": result.config})
                rows += [("retrieval", label, arch, "contrastive", r, f"{direction} {metric}", value)
                         for r, run in enumerate(result.runs) for direction, metrics in run.items()
                         for metric, value in metrics.items()]

    if accuracies:
        print(accuracy_table(accuracies, [label for label, _, _ in sets], row_header="head"))
    if retrievals:
        print()
        print(retrieval_table(retrievals))
    if args.json:
        write_json(args.json, {"dataset": dataset.name, "dataset_sha256": dataset.checksum, "runs": args.runs,
                               "whole_data_runs": whole_runs, "seed": args.seed, "eval_config": dataclasses.asdict(config),
                               "retrieval_config": dataclasses.asdict(rconfig) if args.retrieval else None,
                               "results": records, "versions": versions()})
    if args.csv:
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "set", "arch", "head", "run", "metric", "value"])
            writer.writerows(rows)
