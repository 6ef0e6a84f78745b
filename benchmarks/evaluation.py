"""The evaluation-suite tables of docs/EVALUATION.md on the embedded AV-Digits dataset.

Fusion table (six heads x DM / random at IPC 1 and 10, plus whole data), retrieval table (same
sets) and cross-architecture table (DM / random at IPC 10, ensemble head, six encoder presets).
Every cell calls the same functions as ``avdistill evaluate`` with the same seed, so a cell equals
the CLI's number; each finished cell is cached as one JSON file under ``--out/cells``, so the
grid can be split over processes (``--part``), interrupted and resumed.

    OMP_NUM_THREADS=1 python benchmarks/evaluation.py --part fusion-whole   # in parallel with:
    OMP_NUM_THREADS=1 python benchmarks/evaluation.py --part fusion-synthetic
    OMP_NUM_THREADS=1 python benchmarks/evaluation.py                        # the rest, then the tables
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import avdistill
from avdistill.evaluation import (EvalConfig, RetrievalResult, evaluate, evaluate_retrieval,
                                  evaluate_whole_data)
from avdistill.files import atomic_path, versions, write_json
from avdistill.models.heads import HEAD_NAMES, HEADS
from avdistill.reporting.tables import accuracy_table, retrieval_table

SETS = ("dm1", "dm10", "random1", "random10")  # folder names: method + IPC
ARCH_SETS = ("dm10", "random10")
ARCHS = ("small-deep", "small-wide", "small-bn", "small-nonorm", "resnet")  # "small": the fusion cells
PARTS = ("fusion-synthetic", "fusion-whole", "retrieval-synthetic", "retrieval-whole", "arch")


def set_label(name: str) -> str:
    return "Whole data" if name == "whole" else f"{name.rstrip('0123456789')} IPC {name.lstrip('dmrandom')}"


def cells(runs: int, whole_runs: int, arch_runs: int) -> dict[str, list[tuple]]:
    """part -> [(kind, set name, arch, head, runs)]."""
    return {
        "fusion-synthetic": [("accuracy", s, "small", h, runs) for s in SETS for h in HEADS],
        "fusion-whole": [("accuracy", "whole", "small", h, whole_runs) for h in HEADS],
        "retrieval-synthetic": [("retrieval", s, "small", "contrastive", runs) for s in SETS],
        "retrieval-whole": [("retrieval", "whole", "small", "contrastive", whole_runs)],
        "arch": [("accuracy", s, a, "ensemble", arch_runs) for s in ARCH_SETS for a in ARCHS],
    }


def synthetic_set(sets_dir: Path, name: str, seed: int):
    path = sets_dir / name / "synthetic.safetensors"
    if not path.exists():  # the same as `avdistill distill --method M --ipc K --out sets_dir/name`
        method, ipc = name.rstrip("0123456789"), int(name.lstrip("dmrandom"))
        avdistill.distill("av-digits", method, ipc=ipc, seed=seed, out=sets_dir / name, progress=True)
    return avdistill.load_synthetic(path)


def run_cell(cell: tuple, dataset, sets_dir: Path, seed: int) -> dict:
    kind, name, arch, head, runs = cell
    syn = None if name == "whole" else synthetic_set(sets_dir, name, seed)
    start = time.perf_counter()
    if kind == "retrieval":
        result = evaluate_retrieval(syn, dataset, runs, seed, EvalConfig(encoder=arch))
        numbers = {"runs": result.runs}
    else:
        cfg = replace(EvalConfig(), head=head, encoder=arch)
        result = evaluate_whole_data(dataset, runs, seed, cfg) if syn is None else evaluate(syn, dataset, runs, seed, cfg)
        numbers = {"accuracies": result.accuracies}
    return {"cell": list(cell), "seed": seed, **numbers, "wall_seconds": time.perf_counter() - start,
            "synthetic": None if syn is None else {"path": str(syn.path), "meta": syn.meta},
            "config": result.config, "versions": versions()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="runs/eval-sets", help="folder of synthetic sets (distilled when missing)")
    p.add_argument("--out", default="benchmarks/results/evaluation", help="cache of cells, and the tables")
    p.add_argument("--part", choices=PARTS + ("all",), default="all", help="which cells to compute")
    p.add_argument("--runs", type=int, default=3, help="evaluation runs per synthetic-set cell")
    p.add_argument("--whole-data-runs", type=int, default=1, help="runs per whole-data cell")
    p.add_argument("--arch-runs", type=int, default=2, help="runs per cross-architecture cell")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)

    out, sets_dir = Path(args.out), Path(args.sets)
    grid = cells(args.runs, args.whole_data_runs, args.arch_runs)
    dataset = avdistill.load_dataset("av-digits")
    results = {}
    for part in (PARTS if args.part == "all" else (args.part,)):
        for cell in grid[part]:
            path = out / "cells" / ("-".join(map(str, cell)) + f"-s{args.seed}.json")
            if not path.exists():
                print(f"[{part}] {cell}", flush=True)
                write_json(path, run_cell(cell, dataset, sets_dir, args.seed))
            results[cell] = json.loads(path.read_text())
    if args.part == "all":
        report(results, grid, out)


def report(results: dict, grid: dict, out: Path) -> None:
    columns = [set_label(s) for s in SETS + ("whole",)]
    fusion = {}
    for cell in grid["fusion-synthetic"] + grid["fusion-whole"]:
        fusion.setdefault(HEAD_NAMES[cell[3]], {})[set_label(cell[1])] = results[cell]["accuracies"]
    arch = {}
    small = [c for c in grid["fusion-synthetic"] if c[1] in ARCH_SETS and c[3] == "ensemble"]
    for cell in small + grid["arch"]:
        arch.setdefault(cell[2], {})[set_label(cell[1])] = results[cell]["accuracies"]
    retrieval_cells = grid["retrieval-synthetic"] + grid["retrieval-whole"]
    retrievals = {set_label(c[1]): RetrievalResult(results[c]["runs"]) for c in retrieval_cells}
    runs, whole_runs = grid["fusion-synthetic"][0][4], grid["fusion-whole"][0][4]
    text = "\n\n".join([
        f"Fusion (top-1 %, mean ± std; n={runs} runs per synthetic set, n={whole_runs} on whole data)\n\n"
        + accuracy_table(fusion, columns, row_header="head"),
        "Retrieval (R@K %, median rank; class-level match)\n\n" + retrieval_table(retrievals),
        "Cross-architecture (ensemble head, top-1 %, mean ± std (n runs))\n\n"
        + accuracy_table(arch, [set_label(s) for s in ARCH_SETS], row_header="evaluation encoders"),
        "Speed (evaluation runs per minute, one thread, wall time on a shared machine)\n\n"
        + "\n".join(f"- {k}: {v:.2f}" for k, v in speed(results).items()),
    ])
    print(text)
    with atomic_path(out / "tables.md") as tmp:
        tmp.write_text(text + "\n")
    write_json(out / "results.json", {"cells": list(results.values()), "runs_per_minute": speed(results),
                                      "versions": versions()})
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "set", "arch", "head", "run", "metric", "value"])
        for (kind, name, arch_name, head, _), r in results.items():
            if kind == "accuracy":
                writer.writerows((kind, set_label(name), arch_name, head, i, "top1", a)
                                 for i, a in enumerate(r["accuracies"]))
            else:
                writer.writerows((kind, set_label(name), arch_name, head, i, f"{d} {m}", v)
                                 for i, run in enumerate(r["runs"]) for d, ms in run.items() for m, v in ms.items())


def speed(results: dict) -> dict[str, float]:
    """Evaluation runs per minute by training-set size and head, from the cells' wall times."""
    timing = {}
    for (kind, name, arch, head, runs), r in results.items():
        if arch == "small" and name in ("dm1", "dm10", "whole"):
            key = f"{kind}, {set_label(name).replace('dm ', '')}, {HEAD_NAMES.get(head, head)}"
            timing[key] = 60 * runs / r["wall_seconds"]
    return timing


if __name__ == "__main__":
    main()
