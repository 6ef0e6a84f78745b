"""Implementation speed at matched settings: avdistill against the faithful AVDD-code reference.

Both arms run the same method (DM or AVDD) with the same options, seed and iterations, from the
same initial set: the reference does the AVDD code's per-iteration work (``reference.py``: fresh
frozen encoders, one DSA seed per iteration, a forward/backward and an SGD step per class),
avdistill runs its own loop (all classes in one batched pass, balanced slices, the real class
means computed under ``inference_mode`` through its real-means cache). The avdistill arm's cache
is a fresh empty folder for every measurement, so its filling is inside the timed iterations.

One process per cell (preset, method, IPC), arms interleaved A B A B ... (``--repeats`` each)
after one untimed warm-up iteration of each, so both see the same machine load; the table gives
medians. Timed: from the start of iteration 0 (the initial set built, in both arms by the same
function, timed apart) to the end of the last iteration.

A *grid* cell runs DM and AVDD at IPC 1 and 10 one after the other in each arm (one shared,
initially empty cache in the avdistill arm): the real class means of a draw do not depend on the
method or the IPC, so avdistill computes them once for the four runs, where the reference
embeds the real pairs in every run.

  python benchmarks/matched.py --iterations 8 --repeats 2                  # small preset, AV-Digits
  python benchmarks/matched.py --preset avdd --classes 2 --real-per-class 16 --iterations 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docsection import shown_arguments, write_section

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("reference", "avdistill")


def dataset_for(preset: str, data: str, classes: int, real_per_class: int):
    if preset == "avdd":
        from generated import vggs_shaped

        return vggs_shaped(classes, real_per_class)
    from avdistill.data import load_dataset

    return load_dataset(data)


def options_for(method: str, preset: str, iterations: int, real_per_class: int, extra: dict) -> dict:
    """The method's avdistill defaults with the budget of this benchmark; the same dict for both arms."""
    options = {"iterations": iterations, "real_per_class": real_per_class, "encoder": preset, **extra}
    if preset == "avdd" and method == "avdd":
        options["init"] = "real"  # herding's feature training at 224x224 takes hours here; same code in both arms
    return options


def time_arm(arm: str, dataset, runs: list[tuple[str, int]], options: dict[str, dict], cache_root: Path) -> dict:
    """Seconds of the iterations (init excluded) of `runs` [(method, ipc)] in `arm`, and what they embedded."""
    from avdistill.methods.avdd import avdd_loss
    from avdistill.methods.base import RunContext, get_method, make_config
    from avdistill.methods.dm import dm_loss
    from avdistill.methods.matching import distill_matching

    import reference

    loop = init = 0.0
    iterations = real = 0
    cache = Path(tempfile.mkdtemp(dir=cache_root))  # empty: the avdistill arm fills it inside the timed loop
    for method, ipc in runs:
        marks: dict[str, float] = {"start": time.perf_counter()}

        def mark(it, *_):
            if it == 0:
                marks["loop"] = time.perf_counter()

        if arm == "reference":
            out = reference.run(dataset, method, ipc, options[method], seed=0, on_iteration=mark)
            real += out["real_embedded"]
        else:
            cfg = make_config(get_method(method), {**options[method], "real_cache": str(cache)})
            loss = (lambda m: avdd_loss(m, cfg.lam_jm, cfg.lam_mgm)) if method == "avdd" else dm_loss

            def step(matcher, it, audio, frames):
                mark(it)
                return loss(matcher(it, audio, frames))

            before = REAL_DRAWS_COMPUTED[0]
            distill_matching(dataset, ipc, cfg, RunContext(seed=0, progress=False), step, method)
            sizes = dataset.train.class_indices(dataset.num_classes)
            real += (REAL_DRAWS_COMPUTED[0] - before) * sum(min(cfg.real_per_class, len(i)) for i in sizes)
        end = time.perf_counter()
        loop += end - marks["loop"]
        init += marks["loop"] - marks["start"]
        iterations += options[method]["iterations"]
    return {"seconds": loop, "init_seconds": init, "iterations": iterations, "real_embedded": real}


REAL_DRAWS_COMPUTED = [0]


def count_real_draws() -> None:
    """Count the draws whose real class means avdistill computes (instrumentation: the cache decides which)."""
    from avdistill.methods.real_means import RealMeans

    compute = RealMeans.real_means

    def counted(self, draw):
        REAL_DRAWS_COMPUTED[0] += 1
        return compute(self, draw)

    RealMeans.real_means = counted


def run_cell(preset: str, data: str, runs: list[tuple[str, int]], iterations: int, repeats: int, classes: int,
             real_per_class: int, extra: dict) -> dict:
    """One cell in this process: warm-up, then ABAB... Returns every timing, in order."""
    count_real_draws()
    dataset = dataset_for(preset, data, classes, real_per_class)
    options = {m: options_for(m, preset, iterations, real_per_class, extra) for m, _ in runs}
    warm = {m: {**o, "iterations": 1} for m, o in options.items()}
    results: dict[str, list] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as root:
        cold_init = {}
        for arm in ARMS:  # untimed iterations: first-call costs (allocator, kernel selection); the cold initial set
            cold_init[arm] = time_arm(arm, dataset, runs[:1], warm, Path(root))["init_seconds"]
        for _ in range(repeats):
            for arm in ARMS:
                load = os.getloadavg()[0]
                r = time_arm(arm, dataset, runs, options, Path(root))
                results[arm].append({**r, "load": load})
                print(preset, runs, arm, r, f"load {load:.1f}", file=sys.stderr, flush=True)
    sizes = dataset.train.class_indices(dataset.num_classes)
    return {"results": results, "cold_init_seconds": cold_init, "dataset": dataset.name, "num_classes": dataset.num_classes,
            "real_per_iteration": sum(min(real_per_class, len(i)) for i in sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", choices=("small", "avdd"))
    parser.add_argument("--data", default="av-digits", help="dataset of the small preset (name or file)")
    parser.add_argument("--methods", default="dm,avdd")
    parser.add_argument("--ipc", default="1,10")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--real-per-class", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10, help="avdd preset: classes of the generated dataset")
    parser.add_argument("--grid", action="store_true", help="also the grid cell (4 runs sharing one cache)")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell, print JSON
    parser.add_argument("--json", help="also write the raw timings here")
    parser.add_argument("--report-from", help="rewrite the section from the raw timings of an earlier run (its --json)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.cell:
        runs = [(m, int(i)) for m, i in json.loads(args.cell)]
        print(json.dumps(run_cell(args.preset, args.data, runs, args.iterations, args.repeats, args.classes,
                                  args.real_per_class, {})))
        return
    if args.report_from:
        saved = json.loads(Path(args.report_from).read_text())
        sys.argv[1:] = saved["argv"]
        write_section(args.doc, f"matched-{args.preset}", report(argparse.Namespace(**saved["args"]), saved["cells"],
                                                                 saved["load_start"], saved["wall"], saved["commit"],
                                                                 saved.get("cpus")))
        return
    cells = [[(m, int(i))] for m in args.methods.split(",") for i in args.ipc.split(",")]
    if args.grid:
        cells.append([run for cell in cells for run in cell])
    started, load_start, cpus = time.perf_counter(), os.getloadavg(), sorted(os.sched_getaffinity(0))
    measured = []
    for runs in cells:
        cmd = [sys.executable, __file__, "--cell", json.dumps(runs), *sys.argv[1:]]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its progress goes to stderr
        if out.returncode:
            raise SystemExit(f"cell {runs} failed (see above)")
        measured.append((runs, json.loads(out.stdout.strip().splitlines()[-1])))
    from avdistill.files import source_commit

    wall, commit = time.perf_counter() - started, source_commit()
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "argv": sys.argv[1:], "cells": measured,
                                               "load_start": load_start, "load_end": os.getloadavg(), "wall": wall,
                                               "cpus": cpus,
                                               "commit": commit}, indent=1))
    write_section(args.doc, f"matched-{args.preset}", report(args, measured, load_start, wall, commit, cpus))



def report(args, measured, load_start, wall: float, commit: str, cpus: list[int] | None) -> str:
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    data = ("generated data of VGGS-10K's shapes (1x128x56 audio, 3x224x224 frames, "
            f"{args.classes} classes)" if args.preset == "avdd" else args.data)
    lines = [f"## Matched settings: `{args.preset}` encoders", "",
             f"Regenerate: `OMP_NUM_THREADS={threads} python benchmarks/matched.py {shown_arguments()}` "
             f"(commit {commit}; {threads} thread(s)). "
             f"{data}; {args.real_per_class} real pairs per class or the class size; {args.iterations} timed "
             f"iterations per run; arms interleaved {args.repeats} times (A B A B), median shown; the real-means "
             "cache of avdistill starts empty in every measurement and its filling is timed.", "",
             "| runs | reference it/s | avdistill it/s | ratio (median) | ratios of each repeat | "
             "real pairs embedded/s (ref / avdistill) | initial set s (warm-up: ref first, avdistill second) | load (1 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for runs, cell in measured:
        res = cell["results"]
        rate = {arm: [r["iterations"] / r["seconds"] for r in res[arm]] for arm in ARMS}
        ratios = [a / r for a, r in zip(rate["avdistill"], rate["reference"])]
        emb = {arm: statistics.median(r["real_embedded"] / r["seconds"] for r in res[arm]) for arm in ARMS}
        name = " + ".join(f"{m} IPC {i}" for m, i in runs)
        loads = [r["load"] for arm in ARMS for r in res[arm]]
        lines.append(f"| {name} | {statistics.median(rate['reference']):.3f} | {statistics.median(rate['avdistill']):.3f}"
                     f" | **{statistics.median(ratios):.2f}x** | {', '.join(f'{x:.2f}' for x in ratios)} | "
                     f"{emb['reference']:.3g} / {emb['avdistill']:.3g} | {cold_init(cell)} | "
                     f"{min(loads):.1f}-{max(loads):.1f} |")
    pinned = f", the harness pinned to CPU(s) {', '.join(map(str, cpus))}" if cpus else ""
    lines += ["", f"Load average {load_start[0]:.1f} at the start on "
                  f"{os.cpu_count()} cores{pinned} (shared with other jobs: absolute rates are noisy, the ratios come "
                  f"from interleaved runs). Harness wall time {wall:.0f} s."]
    return "\n".join(lines)


def cold_init(cell: dict) -> str:
    """The initial set's seconds in the warm-up (the reference runs first, so it pays the process's first calls)."""
    cold = cell.get("cold_init_seconds")
    return f"{cold['reference']:.1f} / {cold['avdistill']:.1f}" if cold else "–"


if __name__ == "__main__":
    main()
