"""How validation accuracy grows with a method's iterations: the evidence for its CPU budget (docs/TUNING.md).

One run with the CPU budget's other settings (e.g. AVDD's 64 real pairs per class) distils to the
largest iteration count and evaluates the set on the validation split at every requested count on
the way (the loop's learning rates are constant, so the set after k iterations of a long run is the
set a k-iteration run makes). The wall time at each point is
the run's so far (data loaded, initialisation, real statistics from an empty cache included).

    python benchmarks/budget.py --method avdd --data av-digits-hard --iterations 25,50,100,200 \\
        --runs 2 --out docs/tuning/avdd-budget.json
    python benchmarks/budget.py --report-from docs/tuning/*-budget.json --doc docs/TUNING.md

``--report-from`` writes the curves of several runs as one table (iterations x methods) into the
``budget-curves`` section of ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from avdistill.config import parse_ints
from avdistill.data import load_dataset
from avdistill.evaluation import evaluate
from avdistill.files import source_commit, versions, write_json
from avdistill.methods import distill, get_method
from avdistill.methods.base import make_config
from avdistill.methods.budgets import budget_options
from avdistill.methods.watch import Watch
from avdistill.spread import mean_std
from avdistill.synthetic import SyntheticSet
from docsection import write_section


def report(files: list[str], doc: str) -> str:
    """One table of several curves: validation accuracy and wall seconds so far, per iteration count and method."""
    runs = [json.loads(Path(f).read_text()) for f in files]
    curves = {r["method"]: {p["iterations"]: p for p in r["points"]} for r in runs}
    counts = sorted({it for points in curves.values() for it in points})
    lines = ["| iterations | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for it in counts:
        cells = [f"{mean_std(points[it]['val_accuracies'])} ({points[it]['wall_seconds']:.0f} s)"
                 if it in points else "" for points in curves.values()]
        lines.append(f"| {it} | " + " | ".join(cells) + " |")
    sources = "; ".join(f"{r['method']}: `{Path(f).name}`, commit {r['commit']}, seed {r['seed']}, IPC {r['ipc']}, "
                        f"{r['data']}" for f, r in zip(files, runs))
    text = ("Validation accuracy (%, mean ± std over the evaluation runs of one set) and, in brackets, the run's wall "
            f"seconds so far. Written by `python benchmarks/budget.py --report-from {' '.join(files)}` from: "
            f"{sources}.\n\n" + "\n".join(lines))
    write_section(doc, "budget-curves", text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report-from", nargs="+", metavar="JSON", help="write earlier runs' curves as one table")
    p.add_argument("--doc", default="docs/TUNING.md", help="the Markdown file --report-from writes its section into")
    p.add_argument("--method", default="avdd")
    p.add_argument("--data", default="av-digits-hard")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", default="25,50,100,200,300,400")
    p.add_argument("--runs", type=int, default=3, help="validation runs per point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args()
    if args.report_from:
        print(report(args.report_from, args.doc))
        return
    if not args.out:
        p.error("--out is required to measure a curve")
    points = sorted(parse_ints(args.iterations, "--iterations"))
    # the code that runs: taken at the start, as the checkout may move during a long run
    commit = source_commit()
    dataset = load_dataset(args.data)
    spec = get_method(args.method)
    labels = torch.arange(dataset.num_classes).repeat_interleave(args.ipc)
    rows: list[dict] = []
    evaluating = [0.0]  # seconds spent in the checks themselves, not part of the run's wall time

    def score(done: int, audio: torch.Tensor, frames: torch.Tensor, factor: int, started: float) -> None:
        now = time.perf_counter()
        elapsed = now - started - evaluating[0]
        syn = SyntheticSet(audio.cpu(), frames.cpu(), labels, list(dataset.classes), dataset.preprocessing,
                           factor=factor)
        result = evaluate(syn, dataset, args.runs, args.seed, progress=False, on="val")
        rows.append({"iterations": done, "wall_seconds": round(elapsed, 1), "val_accuracies": result.accuracies})
        print(f"{done:>6} iterations  {elapsed:7.1f} s  val {result}", flush=True)
        evaluating[0] += time.perf_counter() - now

    options = {**budget_options(spec, "cpu"), "iterations": points[-1]}  # the CPU budget's batch sizes
    factor = make_config(spec, options).factor_for(args.ipc, dataset)  # a synthesis method's (AV-MMD: per IPC)

    def check(done: int, audio: torch.Tensor, frames: torch.Tensor) -> None:
        if done in points:
            score(done, audio, frames, factor, started)

    with tempfile.TemporaryDirectory() as cache:  # real statistics, herding features: from an empty cache
        os.environ["XDG_CACHE_HOME"] = cache
        started = time.perf_counter()
        watch = Watch(check=check, check_every=math.gcd(*points))
        syn = distill(dataset, args.method, args.ipc, args.seed, progress=False, watch=watch, **options)
        score(points[-1], syn.audio, syn.frames, syn.factor, started)
    write_json(args.out, {"method": args.method, "data": args.data, "dataset_sha256": dataset.checksum,
                          "ipc": args.ipc, "seed": args.seed, "runs": args.runs, "config": syn.meta["config"],
                          "commit": commit, "points": rows, "versions": versions()})
    print("| iterations | wall time (s) | validation accuracy (%) |\n|---|---|---|")
    for row in rows:
        acc = row["val_accuracies"]
        print(f"| {row['iterations']} | {row['wall_seconds']:.0f} | {mean_std(acc)} |")


if __name__ == "__main__":
    main()
