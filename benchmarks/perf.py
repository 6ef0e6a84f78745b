"""Performance harness: distillation and evaluation speed, peak memory, and a reference loop.

Writes its section of docs/BENCHMARKS.md (other scripts own the other sections). Every figure comes from this run on this machine; speed-ups are
ratios against a baseline measured in the same run, since absolute times on a shared 2-core
machine drift. Each measurement runs in its own subprocess so its peak RSS is its own.

  python benchmarks/perf.py                 # what `make bench` runs
  python benchmarks/perf.py --iterations 40 --eval-runs 3

The reference row is DM as the public AVDD code runs it (``reference.py``); the matched-settings
comparison of issue 18, arms interleaved, is ``matched.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from docsection import write_section

ROOT = Path(__file__).resolve().parents[1]


def measure_distill(method: str, ipc: int, iterations: int, real_per_class: int) -> dict:
    """Wall time of one whole `distill` call (set-up such as herding's encoder training included)."""
    import dataclasses

    import avdistill
    from avdistill.data import load_dataset
    from avdistill.methods import get_method

    dataset = load_dataset("av-digits")
    fields = {f.name for f in dataclasses.fields(get_method(method).config_class)}
    wanted = {"iterations": iterations, "real_per_class": real_per_class,
              "real_cache": "off"}  # throughput of the computation itself, not of a cache a previous run filled
    options = {k: v for k, v in wanted.items() if k in fields}
    if "iterations" in options:  # warm-up: first-call costs (allocator, kernels) are not throughput
        avdistill.distill(dataset, method, ipc=ipc, seed=0, progress=False, **{**options, "iterations": 1})
    start = time.perf_counter()
    avdistill.distill(dataset, method, ipc=ipc, seed=0, progress=False, **options)
    seconds = time.perf_counter() - start
    iterative = "iterations" in options
    real = sum(min(real_per_class, len(i)) for i in dataset.train.class_indices(dataset.num_classes))
    return {"seconds": seconds, "iterations_per_s": iterations / seconds if iterative else None,
            "real_samples_per_s": real * iterations / seconds if "real_per_class" in options else None}


def measure_reference(ipc: int, iterations: int, real_per_class: int) -> dict:
    """DM as the AVDD code runs it (``reference.py``: frozen encoders, per-class passes and steps)."""
    import reference
    from avdistill.data import load_dataset

    dataset = load_dataset("av-digits")
    options = {"real_per_class": real_per_class}
    reference.run(dataset, "dm", ipc, {**options, "iterations": 1}, seed=0)  # warm-up, as the DM row
    start = time.perf_counter()
    out = reference.run(dataset, "dm", ipc, {**options, "iterations": iterations}, seed=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "iterations_per_s": iterations / seconds,
            "real_samples_per_s": out["real_embedded"] / seconds}


def measure_evaluate(ipc: int, runs: int) -> dict:
    import avdistill
    from avdistill.data import load_dataset

    dataset = load_dataset("av-digits")
    syn = avdistill.distill(dataset, "random", ipc=ipc, seed=0, progress=False)
    start = time.perf_counter()
    avdistill.evaluate(syn, dataset, runs=runs, progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "runs_per_minute": 60 * runs / seconds}


def in_subprocess(kind: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter; add its peak RSS (MiB)."""
    code = (f"import json, resource, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import perf; "
            f"r = perf.measure_{kind}(**{kwargs!r}); "
            f"r['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measurement {kind} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="distillation iterations per measurement")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--real-per-class", type=int, default=128, help="real pairs per class (AVDD: 128)")
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from avdistill.methods import METHODS

    started, load_before = time.perf_counter(), os.getloadavg()
    rows = {}
    for method in sorted(METHODS):
        rows[method] = in_subprocess("distill", method=method, ipc=args.ipc, iterations=args.iterations,
                                     real_per_class=args.real_per_class)
        print(method, rows[method], flush=True)
    reference = in_subprocess("reference", ipc=args.ipc, iterations=args.iterations, real_per_class=args.real_per_class)
    print("reference", reference, flush=True)
    evaluation = in_subprocess("evaluate", ipc=args.ipc, runs=args.eval_runs)
    print("evaluate", evaluation, flush=True)

    fmt = lambda x, spec: "–" if x is None else format(x, spec)  # noqa: E731
    lines = ["# Performance", "", f"Machine: {machine()}.", "",
             f"Regenerate: `make bench` (= `python benchmarks/perf.py --iterations {args.iterations} "
             f"--ipc {args.ipc} --real-per-class {args.real_per_class} --eval-runs {args.eval_runs}`). "
             f"Embedded AV-Digits dataset, `small` encoders, IPC {args.ipc}, {args.real_per_class} real pairs per "
             f"class per iteration, {args.iterations} iterations per measurement; each row in its own process.", "",
             "## Distillation", "",
             "Wall time covers one whole `distill` call. Iterative methods (DM, AVDD) are timed after a "
             "one-iteration warm-up call in the same process, so set-up that is cached in-process (AVDD's "
             "herding-init feature networks) is not counted; for herding and k-center it is (training the "
             "feature encoders is most of their time). iterations/s divides the iterations by the wall time.", "",
             "| method | iterations/s | real samples embedded/s | wall (s) | peak RSS (MiB) |",
             "|---|---|---|---|---|"]
    for name, r in [*rows.items(), ("reference loop (AVDD-code style DM)", reference)]:
        lines.append(f"| {name} | {fmt(r['iterations_per_s'], '.2f')} | {fmt(r['real_samples_per_s'], '.0f')} | {r['seconds']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    if "dm" in rows:
        ratio = rows["dm"]["iterations_per_s"] / reference["iterations_per_s"]
        lines += ["", f"**DM vs the reference loop: {ratio:.2f}x the iterations per second**, same data, IPC, "
                      "real batch and encoders, measured in the same run. The loss is the same function; the "
                      "reference additionally steps once per class, as the AVDD code does."]
    lines += ["", "## Evaluation", "",
              f"AVDD protocol (30 epochs, batch 32, ensemble head) on a random IPC-{args.ipc} set: "
              f"**{evaluation['runs_per_minute']:.1f} runs/minute** ({args.eval_runs} runs in "
              f"{evaluation['seconds']:.1f} s, peak RSS {evaluation['peak_rss_mib']:.0f} MiB).", "",
              f"Harness wall time: {time.perf_counter() - started:.0f} s.", "",
              "## What this says", "", *interpretation(rows, reference, evaluation, load_before, os.getloadavg()), ""]
    write_section(args.out, "perf", "\n".join(lines))
    print("\n".join(lines))


def interpretation(rows: dict, reference: dict, evaluation: dict, load_before, load_after) -> list[str]:
    """The reading of this run's figures, written from them (so it stays true when they change)."""
    cores = os.cpu_count() or 1
    out = [f"- Load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end on {cores} cores"
           + (": the machine was shared with other jobs, so absolute times are noisy; only the ratios "
              "(measured in the same run) are worth comparing." if max(load_before[0], load_after[0]) > 0.5 * cores
              else ": the machine was mostly idle.")]
    if "dm" in rows:
        ratio = rows["dm"]["iterations_per_s"] / reference["iterations_per_s"]
        verdict = ("faster than" if ratio > 1.1 else "slower than" if ratio < 0.9 else "about as fast as")
        out.append(f"- Batching all classes through the encoders in one pass makes DM {verdict} the AVDD-code-style "
                   f"per-class loop here ({ratio:.2f}x); the batched path also takes one optimiser step per "
                   "iteration instead of one per class.")
        for name, r in rows.items():
            if name != "dm" and r["iterations_per_s"] is not None:
                out.append(f"- {name}: {r['iterations_per_s'] / rows['dm']['iterations_per_s']:.2f}x DM's "
                           f"iterations per second ({r['peak_rss_mib'] / rows['dm']['peak_rss_mib']:.2f}x its peak RSS).")
    slowest = max(rows, key=lambda n: rows[n]["seconds"])
    out.append(f"- The slowest call measured is {slowest} ({rows[slowest]['seconds']:.0f} s); one evaluation run "
               f"takes {60 / evaluation['runs_per_minute']:.1f} s, so a benchmark cell of 3 sets x 3 runs spends "
               f"about {9 * 60 / evaluation['runs_per_minute']:.0f} s in evaluation.")
    return out


if __name__ == "__main__":
    main()
