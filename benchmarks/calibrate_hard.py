"""Choose AV-Digits-Hard's degradation strengths on the VALIDATION split (never the test split).

For each candidate :class:`avdistill.data.hard.Degradation`, the embedded AV-Digits (train / val
by speaker) is degraded and evaluated with the AVDD protocol on val: whole data with the audio-only,
visual-only and ensemble heads, and random IPC 10 (ensemble). The criterion (issue 17): random
IPC 10 at least 20 points under whole data, and audio-only and visual-only each clearly below AV.
One JSON line per finished candidate goes to --out (a rerun skips those), then a table.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/calibrate_hard.py --out benchmarks/results/hard/calibration.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import avdistill
from avdistill.data.embedded import with_speaker_validation
from avdistill.data.hard import Degradation, degrade_dataset
from avdistill.data.storage import dataset_digest, load_prepared
from avdistill.data.embedded import embedded_path
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.io import versions

CANDIDATES = {
    "mild": Degradation(audio_interferer_db=6.0, audio_noise_db=6.0, frame_interferer=0.35, frame_noise_std=40.0),
    "medium": Degradation(),  # the shipped strengths (avdistill.data.hard)
    "strong": Degradation(audio_interferer_db=1.0, audio_noise_db=-2.0, frame_interferer=0.5, frame_noise_std=80.0),
}


def measure(d: Degradation, runs: int, sets: int) -> dict:
    base = with_speaker_validation(load_prepared(embedded_path()))
    data = degrade_dataset(base, d)
    data.checksum = dataset_digest(data)
    row = {}
    for head in ("a", "v", "ensemble"):
        result = evaluate_whole_data(data, runs, 0, EvalConfig(head=head), progress=False, on="val")
        row[f"whole {head}"] = result.accuracies
    accs = []
    for s in range(sets):
        syn = avdistill.distill(data, "random", ipc=10, seed=s, progress=False)
        accs += evaluate(syn, data, runs, 1000 * s, EvalConfig(), progress=False, on="val").accuracies
    row["random10 ensemble"] = accs
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sets", type=int, default=2)
    args = parser.parse_args()
    done = {}
    if args.out.exists():
        done = {r["candidate"]: r for r in map(json.loads, args.out.read_text().splitlines())}
    for name in args.candidates.split(","):
        d = CANDIDATES[name]
        if name in done and done[name]["degradation"] == dataclasses.asdict(d):
            continue
        record = {"candidate": name, "degradation": dataclasses.asdict(d), "split": "val",
                  "runs": args.runs, "sets": args.sets, "results": measure(d, args.runs, args.sets),
                  "versions": versions()}
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        done[name] = record
        print(json.dumps(record["results"]), flush=True)
    mean = lambda xs: 100 * sum(xs) / len(xs)  # noqa: E731
    print("| candidate | whole A | whole V | whole AV | random IPC 10 AV | gap |")
    print("|---|---|---|---|---|---|")
    for name, r in done.items():
        res = r["results"]
        gap = mean(res["whole ensemble"]) - mean(res["random10 ensemble"])
        print(f"| {name} | {mean(res['whole a']):.1f} | {mean(res['whole v']):.1f} | {mean(res['whole ensemble']):.1f} "
              f"| {mean(res['random10 ensemble']):.1f} | {gap:.1f} |")


if __name__ == "__main__":
    main()
