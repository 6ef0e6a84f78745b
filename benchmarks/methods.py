"""Benchmark: coresets vs DM vs AVDD vs DAVDD, and AVDD's and DAVDD's ablation rows, on AV-Digits at IPC 1 and 10.

Every (cell, seed) distils one synthetic set and evaluates it with the AVDD protocol
(`--eval-runs` fresh networks) in a forked child process, whose peak RSS (distillation and
evaluation together) is recorded; its result is cached as JSON under `--out`, so a rerun (or a
second worker: `--worker 1/2`) continues where the last stopped. `--report` prints the Markdown
tables of docs/METHODS.md from the cache: mean ± std over all seeds x evaluation runs, plus the
mean wall time to distil one synthetic set.

    OMP_NUM_THREADS=1 python benchmarks/methods.py                 # run (resumable)
    python benchmarks/methods.py --report                          # the tables
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

import torch
from safetensors import safe_open
from tabulate import tabulate

import avdistill
from avdistill.evaluation import evaluate
from avdistill.files import versions, write_json
from avdistill.methods import get_method
from avdistill.methods.coreset import train_features
from avdistill.spread import mean_std

NO_CROSS = {"lam_jm": 0.0, "lam_mgm": 0.0}
COMPARISON = {
    "Random": ("random", {}),
    "Herding (av)": ("herding", {}),
    "K-Center (av)": ("kcenter", {}),
    "DM": ("dm", {}),
    "AVDD": ("avdd", {}),
    "MTT": ("mtt", {}),
    "DAVDD": ("davdd", {}),
}
ABLATION = {
    "random init": ("avdd", {"init": "real", "factor": 1, **NO_CROSS}),
    "herding init": ("avdd", {"init": "herding", "factor": 1, **NO_CROSS}),
    "random init + factor": ("avdd", {"init": "real", "factor": 2, **NO_CROSS}),
    "herding + factor (base)": ("avdd", {"init": "herding", "factor": 2, **NO_CROSS}),
    "+ JM": ("avdd", {"lam_mgm": 0.0}),
    "+ JM + MGM (AVDD)": ("avdd", {}),
}
DAVDD_ABLATION = {
    "DAVDD (all terms)": ("davdd", {}),
    "random bank": ("davdd", {"bank": "random"}),
    "no decoupling": ("davdd", {"decoupler": "none"}),
    "− private matching": ("davdd", {"lam_private": 0.0}),
    "− CIM": ("davdd", {"lam_cim": 0.0}),
    "− sample alignment": ("davdd", {"lam_sample": 0.0}),
    "− distribution alignment": ("davdd", {"lam_dist": 0.0}),
}
ABLATION_IPCS = {"davdd": (10,)}  # compute is short: DAVDD's ablation rows run at IPC 10 only


def method_options(method: str, options: dict, args) -> dict:
    """The benchmark's reduced budget, restricted to the options `method`'s config has (coresets take none).

    Methods with a cache of trained networks (MTT's experts, DAVDD's banks) keep it under `--out`, so every
    job of the benchmark shares one.
    """
    budget = {"feature_epochs": args.feature_epochs, "iterations": args.iterations,
              "real_per_class": args.real_per_class, "herding_epochs": args.feature_epochs, "checkpoint_every": 25,
              "expert_dir": str(Path(args.out) / "mtt-experts"), "bank_dir": str(Path(args.out) / "davdd-banks")}
    names = {f.name for f in dataclasses.fields(get_method(method).config_class)}
    return {**{k: v for k, v in budget.items() if k in names}, **options}


def jobs(args) -> dict[str, tuple[int, str, dict, int]]:
    """key -> (ipc, method, options, seed), unique, in priority order: comparisons first, then ablations;
    within a table seed by seed, so a run cut short still has every row at fewer seeds."""
    out = {}
    for rows in (COMPARISON, ABLATION, DAVDD_ABLATION):
        for seed in range(args.seeds):
            for ipc in args.ipcs:
                for method, options in rows.values():
                    if rows is not COMPARISON and ipc not in ABLATION_IPCS.get(method, (ipc,)):
                        continue
                    out.setdefault(job_key(ipc, method, options, seed), (ipc, method, options, seed))
    return out


def job_key(ipc: int, method: str, options: dict, seed: int) -> str:
    """Cache key: identical settings share a result (AVDD's comparison cell is the last ablation row)."""
    opts = "_".join(f"{k}={v}" for k, v in sorted(options.items())) or "defaults"
    return f"ipc{ipc}/{method}/{opts}/seed{seed}"


def run_job(data, ipc, method, options, seed, args, out: Path) -> dict:
    """Distil and evaluate one cell in a forked child, so the recorded peak RSS is this job's process alone."""
    key = job_key(ipc, method, options, seed)
    path = out / f"{key}.json"
    if not path.exists():
        child = multiprocessing.get_context("fork").Process(target=_job, args=(data, ipc, method, options, seed,
                                                                              args, out, path))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"{key}: job failed (exit code {child.exitcode})")
    return json.loads(path.read_text())


def _job(data, ipc, method, options, seed, args, out: Path, path: Path) -> None:
    key = job_key(ipc, method, options, seed)
    opts = method_options(method, options, args)
    syn = avdistill.distill(data, method, ipc=ipc, seed=seed, out=out / key, progress=args.progress, **opts)
    result = evaluate(syn, data, runs=args.eval_runs, seed=seed, progress=args.progress)
    record = {"method": method, "ipc": ipc, "seed": seed, "options": opts, "factor": syn.factor,
              "accuracies": result.accuracies, "distill_seconds": syn.meta["wall_seconds"],
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "eval_config": result.config, "versions": versions()}
    write_json(path, record)
    print(f"{key}: {result} in {syn.meta['wall_seconds']:.0f} s", flush=True)


def precompute_features(data, args, out: Path) -> None:
    """Train the feature networks once per seed (shared by herding, k-center and herding init); time it."""
    for seed in range(args.seeds):
        path = out / f"features/seed{seed}.json"
        start = time.perf_counter()
        train_features(data, "av", "small", args.feature_epochs, seed)
        if not path.exists():
            write_json(path, {"seed": seed, "epochs": args.feature_epochs,
                              "seconds": round(time.perf_counter() - start, 1)})


def precompute_banks(data, selected, args) -> None:
    """Train each DAVDD bank the selected jobs use before any timed job (its training figures go to its cache entries' headers)."""
    from avdistill.methods import get_method, make_config
    from avdistill.methods.davdd import prepare_bank

    for _, method, options, _ in selected:
        if method == "davdd":
            prepare_bank(data, make_config(get_method("davdd"), method_options(method, options, args)),
                         progress=args.progress)


def bank_info(folder: Path) -> dict:
    """A cached DAVDD bank's config and training seconds, from its entries' headers."""
    config, seconds = {}, 0.0
    for path in sorted(folder.glob("entry*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        config = json.loads(meta["identity"])["config"]
        info = json.loads(meta["info"])
        seconds += info["encoder_seconds"] + info["decoupler_seconds"]
    return {"config": config, "seconds": seconds}


def report(args, out: Path) -> str:
    lines = []
    for title, rows in (("comparison", COMPARISON), ("ablation", ABLATION), ("DAVDD ablation", DAVDD_ABLATION)):
        table = []
        for row, (method, options) in rows.items():
            cells = [row]
            for ipc in args.ipcs:
                recs = [json.loads(p.read_text()) for seed in range(args.seeds)
                        if (p := out / f"{job_key(ipc, method, options, seed)}.json").exists()]
                accs = [a for r in recs for a in r["accuracies"]]
                if not accs:
                    cells += ["–", "–", "–"]
                    continue
                cells.append(f"{mean_std(accs, count=False)} ({len(recs)}×{len(accs) // len(recs)})")
                cells.append(f"{statistics.fmean(r['distill_seconds'] for r in recs):.1f}")
                peaks = [r["peak_rss_mib"] for r in recs if "peak_rss_mib" in r]
                cells.append(f"{max(peaks)}" if peaks else "–")
            table.append(cells)
        headers = [{"comparison": "method", "ablation": "AVDD ablation row"}.get(title, "DAVDD ablation row")]
        for ipc in args.ipcs:
            headers += [f"IPC {ipc} acc % (sets×runs)", f"IPC {ipc} s/set", f"IPC {ipc} peak MiB"]
        lines += [f"### {title}", "", tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    banks = sorted(p for p in out.glob("davdd-banks/*") if p.is_dir())
    if banks:
        infos = [bank_info(p) for p in banks]
        lines.append("DAVDD banks (trained once, cached, not included in the s/set column): " + "; ".join(
            f"{i['config']['bank']}/{i['config']['decoupler']} {i['seconds']:.0f} s" for i in infos) + ".")
    features = sorted(out.glob("features/seed*.json"))
    if features:
        secs = [json.loads(p.read_text())["seconds"] for p in features]
        lines.append(f"Feature networks (herding, k-center, herding init): {statistics.fmean(secs):.0f} s per seed, "
                     "trained once per seed and not included in the s/set column.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-methods", help="cache folder (per-job JSON and synthetic sets)")
    p.add_argument("--ipcs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10])
    p.add_argument("--seeds", type=int, default=3, help="synthetic sets per cell")
    p.add_argument("--eval-runs", type=int, default=3, help="evaluation runs per synthetic set")
    p.add_argument("--iterations", type=int, default=50, help="DM/AVDD iterations (reduced budget)")
    p.add_argument("--real-per-class", type=int, default=32, help="DM/AVDD real pairs per class per iteration")
    p.add_argument("--feature-epochs", type=int, default=10, help="epochs of the herding/k-center feature networks")
    p.add_argument("--methods", default="", help="comma list: run only the jobs of these methods (default: all)")
    p.add_argument("--worker", default="0/1", help="k/n: run every n-th job starting at k (parallel workers)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--report", action="store_true", help="print the tables from the cache and exit")
    args = p.parse_args()
    out = Path(args.out)
    if args.report:
        print(report(args, out))
        return
    torch.set_num_threads(args.threads)
    k, n = (int(x) for x in args.worker.split("/"))
    data = avdistill.load_dataset("av-digits")
    precompute_features(data, args, out)
    selected = [job for job in jobs(args).values() if not args.methods or job[1] in args.methods.split(",")]
    precompute_banks(data, selected, args)
    for ipc, method, options, seed in selected[k::n]:
        run_job(data, ipc, method, options, seed, args, out)


if __name__ == "__main__":
    main()
