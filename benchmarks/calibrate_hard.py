"""AV-Digits-Hard's calibration: strengths chosen on the VALIDATION split, then reported on test.

``choose``: for each candidate :class:`avdistill.data.hard.Degradation`, AV-Digits (train / val by
speaker) is degraded and evaluated with the AVDD protocol on val: whole data with the audio-only,
visual-only and ensemble heads, and random IPC 10 (ensemble). The criterion (issue 17): random
IPC 10 at least 20 points under whole data, audio-only and visual-only each clearly below AV;
among candidates meeting it, the one whose audio-only and visual-only whole-data accuracies are
closest (both modalities carry the task). One JSON line per finished candidate in --out (a rerun
skips those); the table goes to the data card's section ``calibration-val``.

``report``: the shipped dataset (``load_dataset("av-digits-hard")``) on the TEST split: random
IPC 1 and 10 (--sets sets x --runs runs) and whole data (--whole-runs runs), each with the a, v
and ensemble heads; the table goes to section ``calibration-test``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/calibrate_hard.py choose
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/calibrate_hard.py report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import avdistill
from avdistill.data.embedded import embedded_path, with_speaker_validation
from avdistill.data.hard import Degradation, degrade_dataset
from avdistill.data.storage import dataset_digest, load_prepared
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.files import source_commit
from avdistill.files import versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "src/avdistill/data/assets/AV_DIGITS_HARD.md"
RESULTS = ROOT / "benchmarks/results/hard"
HEADS = ("a", "v", "ensemble")
CANDIDATES = {  # (audio interferer dB below, audio noise dB below, ghost weight, pixel noise std)
    "medium": Degradation(audio_interferer_db=3.0, audio_noise_db=0.0, frame_interferer=0.45, frame_noise_std=60.0),
    "audio+3dB": Degradation(audio_interferer_db=6.0, audio_noise_db=3.0, frame_interferer=0.45, frame_noise_std=60.0),
    "audio+6dB": Degradation(audio_interferer_db=9.0, audio_noise_db=6.0, frame_interferer=0.45, frame_noise_std=60.0),
}


def pct(xs: list[float]) -> str:
    """mean ± std (n) in %, a single run without ±."""
    if len(xs) == 1:
        return f"{100 * xs[0]:.1f} (n=1)"
    return f"{100 * statistics.fmean(xs):.1f} ± {100 * statistics.pstdev(xs):.1f} (n={len(xs)})"


def random_sets(data, ipc: int, sets: int, runs: int, head: str, on: str) -> list[float]:
    accs = []
    for s in range(sets):
        syn = avdistill.distill(data, "random", ipc=ipc, seed=s, progress=False)
        accs += evaluate(syn, data, runs, 1000 * s, EvalConfig(head=head), progress=False, on=on).accuracies
    return accs


def choose(args) -> None:
    out = RESULTS / "calibration-val.jsonl"
    done = {r["candidate"]: r for r in map(json.loads, out.read_text().splitlines())} if out.exists() else {}
    base = with_speaker_validation(load_prepared(embedded_path()))
    at = source_commit()
    for name in args.candidates.split(","):
        d = CANDIDATES[name]
        if name in done and done[name]["degradation"] == dataclasses.asdict(d):
            continue
        data = degrade_dataset(base, d)
        data.checksum = dataset_digest(data)
        same_frames = next((r for r in done.values() if all(
            r["degradation"][k] == v for k, v in dataclasses.asdict(d).items() if k.startswith("frame"))), None)
        results = {}
        for head in HEADS:
            if head == "v" and same_frames is not None and same_frames["runs"] == args.runs:
                results["whole v"] = same_frames["results"]["whole v"]  # the frames are the same tensors
                continue
            results[f"whole {head}"] = evaluate_whole_data(data, args.runs, 0, EvalConfig(head=head), progress=False,
                                                           on="val").accuracies
        results["random10 ensemble"] = random_sets(data, 10, args.sets, args.runs, "ensemble", "val")
        record = {"candidate": name, "degradation": dataclasses.asdict(d), "split": "val", "runs": args.runs,
                  "sets": args.sets, "results": results, "commit": at, "versions": versions()}
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        done[name] = record
        print(json.dumps(results), flush=True)
    lines = ["| candidate | audio interferer / noise (dB below) | ghost weight / pixel noise std | whole A | whole V "
             "| whole AV | random IPC 10 AV | gap |", "|---|---|---|---|---|---|---|---|"]
    for name, r in done.items():
        d, res = r["degradation"], r["results"]
        gap = 100 * (statistics.fmean(res["whole ensemble"]) - statistics.fmean(res["random10 ensemble"]))
        lines.append(f"| {name} | {d['audio_interferer_db']:g} / {d['audio_noise_db']:g} | {d['frame_interferer']:g} / "
                     f"{d['frame_noise_std']:g} | {pct(res['whole a'])} | {pct(res['whole v'])} | "
                     f"{pct(res['whole ensemble'])} | {pct(res['random10 ensemble'])} | {gap:.1f} |")
    text = ("Validation split (160 clips), AVDD protocol; whole data 1 run per head, random IPC 10 "
            f"{next(iter(done.values()))['sets']} sets x 1 run; `gap` = whole AV - random IPC 10 AV (points). "
            f"Command: `OMP_NUM_THREADS=1 python benchmarks/calibrate_hard.py choose` (records with their commit in "
            f"`benchmarks/results/hard/calibration-val.jsonl`).\n\n" + "\n".join(lines))
    write_section(CARD, "calibration-val", text)
    print("\n".join(lines))


def report(args) -> None:
    at = source_commit()  # the code this run imports, whatever is committed while it runs
    data = avdistill.load_dataset("av-digits-hard")
    results = {}
    for head in HEADS:
        for ipc in (1, 10):
            results[f"random IPC {ipc} {head}"] = random_sets(data, ipc, args.sets, args.runs, head, "test")
            print(head, ipc, pct(results[f"random IPC {ipc} {head}"]), flush=True)
        results[f"whole {head}"] = evaluate_whole_data(data, args.whole_runs, 0, EvalConfig(head=head),
                                                       progress=False, on="test").accuracies
        print(head, "whole", pct(results[f"whole {head}"]), flush=True)
    record = {"dataset": data.name, "sha256": data.checksum, "split": "test", "sets": args.sets, "runs": args.runs,
              "whole_runs": args.whole_runs, "results": results, "commit": at, "versions": versions()}
    (RESULTS / "calibration-test.json").write_text(json.dumps(record, indent=1) + "\n")
    names = {"a": "audio-only", "v": "visual-only", "ensemble": "AV ensemble"}
    lines = ["| head | random IPC 1 | random IPC 10 | whole data |", "|---|---|---|---|"]
    for head in HEADS:
        lines.append(f"| {names[head]} | {pct(results[f'random IPC 1 {head}'])} | {pct(results[f'random IPC 10 {head}'])} "
                     f"| {pct(results[f'whole {head}'])} |")
    text = (f"Test split (260 clips), AVDD protocol, accuracy % as mean ± std (n): random sets "
            f"{args.sets} sets x {args.runs} runs, whole data {args.whole_runs} runs per head. Dataset sha256 "
            f"{data.checksum[:12]}…, commit {record['commit']}. Command: `OMP_NUM_THREADS=1 python "
            f"benchmarks/calibrate_hard.py report --sets {args.sets} --runs {args.runs} --whole-runs "
            f"{args.whole_runs}` (numbers in `benchmarks/results/hard/calibration-test.json`).\n\n" + "\n".join(lines))
    write_section(CARD, "calibration-test", text)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("choose", help="candidates on the validation split")
    c.add_argument("--candidates", default=",".join(CANDIDATES))
    c.add_argument("--runs", type=int, default=1)
    c.add_argument("--sets", type=int, default=2)
    r = sub.add_parser("report", help="the shipped strengths on the test split")
    r.add_argument("--sets", type=int, default=3)
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--whole-runs", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    choose(args) if args.mode == "choose" else report(args)


if __name__ == "__main__":
    main()
