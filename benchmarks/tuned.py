"""Tuned settings against the defaults, on the test split: the one read of test after `avdistill tune`.
With ``--on val --first-seed 1``: the same comparison on the validation split with fresh sets, which
says whether the best trial's lead survives more sets and runs than the search gave each trial.

Both arms distil with the same budget (the tuned file's iterations and batch sizes; everything the
search did not touch held at the study's values) for `--sets` seeds, and each set trains
`--runs` fresh evaluation networks (the AVDD protocol). Prints mean ± std (n = sets x runs) per arm
and writes every accuracy to JSON (docs/TUNING.md).

    python benchmarks/tuned.py --tune runs/tune-dm --out docs/tuning/dm-test.json
    python benchmarks/tuned.py --tune runs/tune-dm --on val --first-seed 1 --out docs/tuning/dm-val.json
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from avdistill.data import load_dataset
from avdistill.evaluation import evaluate
from avdistill.files import source_commit, versions, write_json
from avdistill.methods import distill
from avdistill.spread import mean_std


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tune", required=True, help="output folder of avdistill tune (best.toml, defaults.toml)")
    p.add_argument("--sets", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds first-seed .. first-seed + sets - 1; on val, start at 1: seed 0 made the trials' sets")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--arms", default="defaults,tuned", help="which settings to run (default: both)")
    p.add_argument("--on", choices=("test", "val"), default="test",
                   help="split that scores the arms: test (the one read after tuning) or val (the tuned settings' "
                        "lead on validation with more sets and runs than a trial had, free of the search's "
                        "winner's curse)")
    p.add_argument("--out", required=True, help="JSON with every accuracy, rewritten after every set")
    args = p.parse_args()
    arms = {}
    for name, file in (("defaults", "defaults.toml"), ("tuned", "best.toml")):
        with open(Path(args.tune) / file, "rb") as f:
            arms[name] = tomllib.load(f)
        method, data, ipc = (arms[name].pop(key) for key in ("method", "data", "ipc"))
        arms[name].pop("seed")
    arms = {name: arms[name] for name in args.arms.split(",")}
    dataset = load_dataset(data)
    commit = source_commit()
    accuracies: dict[str, list[float]] = {name: [] for name in arms}
    # the arms alternate, so a run cut short still compares them
    for seed in range(args.first_seed, args.first_seed + args.sets):
        for name, options in arms.items():
            options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
            syn = distill(dataset, method, ipc, seed, progress=False, **options)
            result = evaluate(syn, dataset, args.runs, seed, progress=False, on=args.on)
            accuracies[name].extend(result.accuracies)
            print(f"{name} set {seed}: {args.on} {result}", flush=True)
            write_json(args.out, {"method": method, "data": data, "dataset_sha256": dataset.checksum, "ipc": ipc,
                                  "sets_done": seed + 1 - args.first_seed, "first_seed": args.first_seed,
                                  "runs": args.runs, "commit": commit, "versions": versions(),
                                  "arms": {n: {"options": o, f"{args.on}_accuracies": accuracies[n]}
                                           for n, o in arms.items()}})
    print(f"| settings | {args.on} accuracy (%) |\n|---|---|")
    for name, acc in accuracies.items():
        if acc:
            print(f"| {name} | {mean_std(acc)} |")


if __name__ == "__main__":
    main()
