"""Choosing AV-MMD's ingredients: every variant tried, evaluated on one split (the validation split to choose).

Each (variant, IPC, set) distils one synthetic set (seed = set) and evaluates it with the AVDD
protocol on ``--on`` (``val`` to choose, ``test`` only to report); one JSON per cell under
``--out``, so a rerun continues where it stopped and a variant added later reuses the others.
``--report`` prints the Markdown table of docs/AVMMD.md from the cache (mean ± std over sets x runs,
and the mean wall seconds to distil a set), with the command and commit that made it.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/avmmd.py --data av-digits-hard --on val \\
        --variants base,mmd100 --ipc 1,10 --out runs/avmmd-select
    python benchmarks/avmmd.py --report --out runs/avmmd-select
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import write_section  # noqa: E402

import avdistill
from avdistill.config import parse_ints, split_names
from avdistill.evaluation import evaluate
from avdistill.files import source_commit, versions, write_json
from avdistill.synthetic import load_synthetic

BUDGET = {"iterations": 100, "real_per_class": 64}  # the cpu budget of AVDD and AV-MMD, for every optimising row
# The rows before --pack existed ran with AVDD's rule (a class short of pairs shrinks the factor; only IPC 20 has
# one here); they name it, so AV-MMD's later default (repeat) does not change what they measure.
SHRINK = {**BUDGET, "pack": "shrink"}
# The rows before --matched-per-class existed matched every expanded sample; they name it where the default (40)
# would subsample (more than 40 expanded samples per class: factor 2 at IPC 20, factor 3 at IPC 10).
ALL = {"matched_per_class": 0}
VARIANTS = {  # name -> (label, method, options); AV-MMD's defaults are the "mmd" rows' choices
    "herding": ("Herding (av)", "herding", {}),
    "avdd": ("AVDD (factor 2, lr 0.2, λ = 10)", "avdd", BUDGET),
    "mean": ("mean only (DM at AVDD's step, factor per IPC)", "avmmd", {**SHRINK, "lam_mmd": 0.0}),
    "mmd10": ("+ joint MMD, λ_mmd 10", "avmmd", {**SHRINK, "lam_mmd": 10.0}),
    "mmd100": ("+ joint MMD, λ_mmd 100", "avmmd", {**SHRINK, "lam_mmd": 100.0}),
    "mmd1000": ("+ joint MMD, λ_mmd 1000", "avmmd", {**SHRINK, "lam_mmd": 1000.0}),
    "marginal100": ("+ marginal MMD, λ_mmd 100", "avmmd", {**SHRINK, "lam_mmd": 100.0, "kernel": "marginal"}),
    "marginal1000": ("+ marginal MMD, λ_mmd 1000", "avmmd", {**SHRINK, "lam_mmd": 1000.0, "kernel": "marginal"}),
    "bank1000": ("+ joint MMD 1000, trained bank encoders", "avmmd",
                 {**SHRINK, "lam_mmd": 1000.0, "encoders": "bank"}),
    "bankmean": ("mean only, trained bank encoders", "avmmd", {**SHRINK, "lam_mmd": 0.0, "encoders": "bank"}),
    "r2mean": ("mean only, factor 2 by repeated packing", "avmmd", {**BUDGET, **ALL, "lam_mmd": 0.0, "pack": "repeat"}),
    "r2mmd100": ("+ joint MMD 100, factor 2 by repeated packing", "avmmd",
                 {**BUDGET, **ALL, "lam_mmd": 100.0, "pack": "repeat"}),
    "r2mmd1000": ("+ joint MMD 1000, factor 2 by repeated packing", "avmmd",
                  {**BUDGET, **ALL, "lam_mmd": 1000.0, "pack": "repeat"}),
    "r2mmd1000k40": ("+ joint MMD 1000, factor 2 by repeated packing, 40 matched per class", "avmmd",
                     {**BUDGET, "lam_mmd": 1000.0, "pack": "repeat", "matched_per_class": 40}),
    "f3mmd1000": ("+ joint MMD 1000, factor 3 by repeated packing", "avmmd",
                  {**BUDGET, **ALL, "lam_mmd": 1000.0, "factor": 3, "pack": "repeat"}),
    "f3mmd1000k40": ("+ joint MMD 1000, factor 3 by repeated packing, 40 matched per class", "avmmd",
                     {**BUDGET, "lam_mmd": 1000.0, "factor": 3, "pack": "repeat", "matched_per_class": 40}),
    "cov100": ("+ joint MMD 100 + cross-covariance 100", "avmmd", {**SHRINK, "lam_mmd": 100.0, "lam_cov": 100.0}),
    "mmdonly": ("joint MMD only, λ_mmd 100", "avmmd", {**SHRINK, "lam_mean": 0.0, "lam_mmd": 100.0}),
    "f2mean": ("mean only, factor 2 at every IPC", "avmmd", {**SHRINK, "lam_mmd": 0.0, "factor": 2}),
    "f2mmd100": ("+ joint MMD 100, factor 2 at every IPC", "avmmd", {**SHRINK, "lam_mmd": 100.0, "factor": 2}),
    "f1mmd100": ("+ joint MMD 100, factor 1 at every IPC", "avmmd", {**SHRINK, "lam_mmd": 100.0, "factor": 1}),
}


def cell(args, name: str, ipc: int, s: int) -> dict:
    path = Path(args.out) / "cells" / f"{name}-ipc{ipc}-set{s}-{args.on}.json"
    label, method, options = VARIANTS[name]
    settings = {"data": args.data, "method": method, "options": options, "ipc": ipc, "seed": s, "on": args.on,
                "runs": args.runs}
    if path.exists() and json.loads(path.read_text())["settings"] == settings:
        return json.loads(path.read_text())
    dataset = avdistill.load_dataset(args.data)
    folder = Path(args.out) / "sets" / f"{name}-ipc{ipc}-set{s}"
    if (folder / "synthetic.safetensors").exists():
        syn = load_synthetic(folder / "synthetic.safetensors")
    else:
        start = time.perf_counter()
        avdistill.distill(dataset, method, ipc, s, out=folder, progress=False, **options)
        syn = load_synthetic(folder / "synthetic.safetensors")
        print(f"{name} ipc {ipc} set {s}: distilled in {time.perf_counter() - start:.0f} s", flush=True)
    result = evaluate(syn, dataset, runs=args.runs, seed=s, on=args.on, progress=False)
    record = {"settings": settings, "label": label, "accuracies": result.accuracies,
              "wall_seconds": syn.meta.get("wall_seconds", 0.0), "versions": versions(), "commit": source_commit()}
    write_json(path, record)
    print(f"{name} ipc {ipc} set {s} on {args.on}: {100 * result.mean:.2f}", flush=True)
    return record


def report(args) -> str:
    cells = [json.loads(p.read_text()) for p in sorted((Path(args.out) / "cells").glob("*.json"))]
    ipcs = sorted({c["settings"]["ipc"] for c in cells})
    rows = []
    for name, (label, _, _) in VARIANTS.items():
        row = [label]
        for ipc in ipcs:
            mine = [c for c in cells if c["settings"]["ipc"] == ipc and c["label"] == label]
            accs = [100 * a for c in mine for a in c["accuracies"]]
            secs = [c["wall_seconds"] for c in mine]
            row += [f"{statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f} ({len(mine)}×{len(accs) // len(mine)})"
                    if len(accs) > 1 else (f"{accs[0]:.2f} (1)" if accs else "–"),
                    f"{statistics.fmean(secs):.0f}" if mine else "–"]
        if any(x != "–" for x in row[1:]):
            rows.append(row)
    split = {c["settings"]["on"] for c in cells}
    commits = sorted({c.get("commit", "unrecorded") for c in cells})
    header = ["variant"] + [h for ipc in ipcs for h in (f"IPC {ipc} acc % on {'/'.join(sorted(split))} (sets×runs)",
                                                          f"IPC {ipc} s/set")]
    return tabulate(rows, header, tablefmt="github") + f"\n\nCells computed at commit(s): {', '.join(commits)}."


def copies(paths: list[str]) -> str:
    """Per synthetic set: how many pairs of its expanded training samples are exact copies (frames, spectrograms),
    the nearest two frames of a class, and the median distance between a class's frames (pixel L2, model space).
    Packing with repetition starts with copies; this tells whether the matching separated them."""
    rows = []
    for path in paths:
        audio, frames, labels = load_synthetic(path).training_pairs()
        same_f, same_a, nearest, median = [], [], [], []
        for c in labels.unique():
            f, a = frames[labels == c].flatten(1), audio[labels == c].flatten(1)
            i, j = torch.triu_indices(len(f), len(f), 1)
            df, da = torch.cdist(f, f)[i, j], torch.cdist(a, a)[i, j]
            same_f.append(int((df < 1e-4).sum()))
            same_a.append(int((da < 1e-4).sum()))
            nearest.append(float(df.min()))
            median.append(float(df.median()))
        rows.append([path, f"{min(same_f)}-{max(same_f)}", f"{min(same_a)}-{max(same_a)}",
                     f"{min(nearest):.1f}-{max(nearest):.1f}", f"{statistics.fmean(median):.1f}"])
    return tabulate(rows, ["set", "copied frame pairs per class", "copied spectrogram pairs per class",
                           "nearest frames of a class", "median frame distance"], tablefmt="github")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="av-digits-hard")
    p.add_argument("--on", default="val", choices=("val", "test"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--ipc", default="1,10")
    p.add_argument("--sets", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", default="runs/avmmd-select")
    p.add_argument("--report", action="store_true")
    p.add_argument("--copies", nargs="+", metavar="SET", help="count the copies left in these synthetic sets, and stop")
    p.add_argument("--doc", help="with --report: also write the table into this Markdown file's 'avmmd-val' section")
    args = p.parse_args(argv)
    if args.copies:
        print(copies(args.copies))
        return
    if args.report:
        text = report(args)
        print(text)
        print(f"\n(`python benchmarks/avmmd.py --report --out {args.out}`)")
        if args.doc:
            write_section(args.doc, "avmmd-val", text)
        return
    for ipc in parse_ints(args.ipc, "--ipc"):
        for name in split_names(args.variants):
            for s in range(args.sets):
                cell(args, name, ipc, s)


if __name__ == "__main__":
    sys.exit(main())
