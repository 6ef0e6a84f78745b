"""Accuracy against wall time: avdistill's fast AVDD against the AVDD-code-style reference loop.

The reference loop is AVDD as its public code runs it (``reference.py``: fresh frozen encoders,
one DSA seed per iteration, per-class passes and optimiser steps, herding init, factor 2, lr 0.2).
The arms with another step size or cycled draws change the method, not the implementation: they
are recipes, compared on accuracy against time, never implementation speed-ups (issue 18).

Each arm runs in its own process (single-threaded, so two arms never share a core's worth of
threads) and saves snapshots of its synthetic set at several iteration counts with the wall time
spent to reach them (initialisation included). Snapshots are then evaluated with the same
protocol (AVDD: 30 epochs, ensemble head, `--runs` trainings each), and the report gives the
time each arm needs to reach the reference's accuracy.

  python benchmarks/speed.py run --arm reference      # one arm (see ARMS), cached under --out
  python benchmarks/speed.py evaluate                 # every snapshot not yet evaluated
  python benchmarks/speed.py report                   # docs/BENCHMARKS.md section + figure
  python benchmarks/speed.py all                      # the three, every arm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from docsection import write_section

ROOT = Path(__file__).resolve().parents[1]
IPC = 10
# name -> how it runs: "reference" or avdistill's AVDD with these options, and the iteration counts snapshotted
ARMS: dict[str, dict] = {
    "reference": {"loop": "reference", "snapshots": [10, 25, 50, 100, 200, 300],
                  "summary": "AVDD-code style: per-class passes and steps, lr 0.2"},
    "avdd": {"loop": "avdistill", "options": {"real_cache": "off"}, "snapshots": [10, 25, 50, 100, 200],
             "summary": "avdistill AVDD defaults (one batched step per iteration)"},
    "lr0.8": {"loop": "avdistill", "options": {"real_cache": "off", "lr_audio": 0.8, "lr_frames": 0.8},
               "snapshots": [10, 25, 50, 100], "summary": "four times the step size"},
    "lr0.8-warm": {"loop": "avdistill", "options": {"lr_audio": 0.8, "lr_frames": 0.8}, "warm_ipc": 1,
                   "snapshots": [10, 25, 50],
                   "summary": "lr 0.8, real statistics cached by an earlier IPC-1 run with the same seed"},
    "lr0.8-draws20": {"loop": "avdistill", "options": {"real_cache": "off", "lr_audio": 0.8, "lr_frames": 0.8,
                                                          "draws": 20},
                         "snapshots": [10, 25, 50, 100], "summary": "and 20 cycled draws (real side computed 20 times)"},
    "lr0.8-draws10": {"loop": "avdistill", "options": {"real_cache": "off", "lr_audio": 0.8, "lr_frames": 0.8,
                                                       "draws": 10},
                      "snapshots": [25, 50], "summary": "lr 0.8 and 10 cycled draws"},
    "lr1.6-draws10": {"loop": "avdistill", "options": {"real_cache": "off", "lr_audio": 1.6, "lr_frames": 1.6,
                                                       "draws": 10},
                      "snapshots": [10, 25, 50], "summary": "lr 1.6 and 10 cycled draws"},
}


def run_arm(name: str, out: Path) -> None:
    """Run one arm in this process and save its snapshots (``out/NAME.safetensors`` + ``.json``)."""
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    from avdistill.data import load_dataset

    dataset = load_dataset("av-digits")
    arm = ARMS[name]
    if "warm_ipc" in arm:  # fill a fresh real-statistics cache with another IPC's run first, untimed
        import shutil

        import avdistill

        cache = out / f"{name}-real-cache"
        shutil.rmtree(cache, ignore_errors=True)
        arm = {**arm, "options": {**arm["options"], "real_cache": str(cache)}}
        avdistill.distill(dataset, "avdd", ipc=arm["warm_ipc"], seed=0, progress=False,
                          **{**arm["options"], "iterations": max(arm["snapshots"])})
        from avdistill.cache import forget_memory

        forget_memory()  # the timed run trains its herding features itself, as every other arm does
    snapshots: dict[str, torch.Tensor] = {}
    times: dict[int, float] = {}
    load_start = os.getloadavg()
    start = time.perf_counter()

    def record(iteration: int, audio: torch.Tensor, frames: torch.Tensor) -> None:
        if iteration in arm["snapshots"]:
            times[iteration] = time.perf_counter() - start
            snapshots[f"{iteration}.audio"] = audio.detach().clone()
            snapshots[f"{iteration}.frames"] = frames.detach().clone()

    loop = reference_loop if arm["loop"] == "reference" else avdistill_loop
    labels, factor = loop(dataset, arm, record)
    snapshots["labels"] = labels
    out.mkdir(parents=True, exist_ok=True)
    save_file(snapshots, str(out / f"{name}.safetensors"))
    from avdistill.files import versions, write_json
    write_json(out / f"{name}.json", {"arm": arm, "ipc": IPC, "factor": factor, "seconds": times,
                                     "load_average_start": load_start, "load_average": os.getloadavg(),
                                     "versions": versions()})


def reference_loop(dataset, arm: dict, record):
    """AVDD as its public code runs it (``reference.py``), with the paper's recipe."""
    import reference

    options = {"iterations": max(arm["snapshots"]), "real_per_class": 128}
    out = reference.run(dataset, "avdd", IPC, options, seed=0, on_iteration=record)
    return out["labels"], 2


def avdistill_loop(dataset, arm: dict, record):
    """avdistill's AVDD through the shared matching loop, snapshotting before the chosen iterations."""
    from avdistill.methods.avdd import AVDDConfig, avdd_loss
    from avdistill.methods.base import RunContext, make_config, get_method
    from avdistill.methods.matching import distill_matching

    cfg: AVDDConfig = make_config(get_method("avdd"), {**arm["options"], "iterations": max(arm["snapshots"])})
    run = RunContext(seed=0, progress=False)

    def step(matcher, iteration, audio, frames):
        record(iteration, audio, frames)
        return avdd_loss(matcher(iteration, audio, frames), cfg.lam_jm, cfg.lam_mgm)

    audio, frames, labels = distill_matching(dataset, IPC, cfg, run, step, "avdd")
    record(cfg.iterations, audio, frames)
    return labels, cfg.factor


def evaluate_snapshots(out: Path, runs: int, arms: list[str]) -> None:
    """Evaluate every snapshot of `arms` not yet in ``out/NAME.eval.json`` (one JSON entry per iteration count)."""
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    from avdistill.data import load_dataset
    from avdistill.evaluation import evaluate
    from avdistill.files import write_json
    from avdistill.synthetic import SyntheticSet

    dataset = load_dataset("av-digits")
    for name in arms:
        meta_path = out / f"{name}.json"
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(out / f"{name}.safetensors"))
        done_path = out / f"{name}.eval.json"
        done = json.loads(done_path.read_text()) if done_path.exists() else {}
        for iteration in sorted(meta["seconds"], key=int):
            if iteration in done and len(done[iteration]) >= runs:
                continue
            syn = SyntheticSet(tensors[f"{iteration}.audio"], tensors[f"{iteration}.frames"], tensors["labels"],
                               list(dataset.classes), dataset.preprocessing, factor=meta["factor"])
            done[iteration] = evaluate(syn, dataset, runs=runs, progress=False).accuracies
            write_json(done_path, done)
            print(name, iteration, done[iteration], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "evaluate", "report", "all"))
    parser.add_argument("--arm", choices=tuple(ARMS), help="run: the arm; evaluate: only this arm")
    parser.add_argument("--out", default=str(ROOT / "runs" / "speed"), help="cache of snapshots and evaluations")
    parser.add_argument("--runs", type=int, default=3, help="evaluation trainings per snapshot")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--timing", help="report: take wall times from arms rerun into this folder (a quiet machine)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    out = Path(args.out)
    if args.command == "run":
        run_arm(args.arm, out)
    elif args.command == "evaluate":
        evaluate_snapshots(out, args.runs, [args.arm] if args.arm else list(ARMS))
    elif args.command == "all":
        for name in ARMS:
            if not (out / f"{name}.json").exists():
                subprocess.run([sys.executable, __file__, "run", "--arm", name, "--out", str(out)], check=True)
        evaluate_snapshots(out, args.runs, list(ARMS))
        report(out, Path(args.doc))
    else:
        report(out, Path(args.doc), Path(args.timing) if args.timing else None)


def load_results(out: Path, timing: Path | None = None) -> dict[str, dict]:
    """{arm: {"meta": ..., "points": [(iterations, seconds, [accuracies])]}} for every evaluated arm.

    With `timing`, an arm rerun there (e.g. on a quiet machine) takes its wall times from the rerun,
    after checking that the rerun's snapshots are bit-identical to the evaluated ones.
    """
    from safetensors.torch import load_file

    results = {}
    for name in ARMS:
        meta_path, eval_path = out / f"{name}.json", out / f"{name}.eval.json"
        if not (meta_path.exists() and eval_path.exists()):
            continue
        meta, accs = json.loads(meta_path.read_text()), json.loads(eval_path.read_text())
        if timing is not None and (timing / f"{name}.json").exists():
            evaluated, rerun = load_file(str(out / f"{name}.safetensors")), load_file(str(timing / f"{name}.safetensors"))
            if evaluated.keys() != rerun.keys() or any(not evaluated[k].equal(rerun[k]) for k in evaluated):
                raise SystemExit(f"{timing / name}: the timing rerun's snapshots differ from the evaluated ones")
            meta = {**json.loads((timing / f"{name}.json").read_text()), "timing_rerun": True}
        points = [(int(it), meta["seconds"][it], accs[it]) for it in sorted(accs, key=int)]
        results[name] = {"meta": meta, "points": points}
    return results


def first_reaching(points, target: float):
    """The first (iterations, seconds, accuracies) whose mean accuracy reaches `target`, or None."""
    return next((p for p in points if mean(p[2]) >= target), None)


def mean(xs) -> float:
    return sum(xs) / len(xs)


def report(out: Path, doc: Path, timing: Path | None = None) -> None:
    """The "speed" section of docs/BENCHMARKS.md and its figure, from the cached runs and evaluations."""
    from avdistill.spread import mean_std

    results = load_results(out, timing)
    if "reference" not in results:
        raise SystemExit(f"no evaluated reference run under {out}: run `speed.py all` first")
    ref = results["reference"]["points"]
    target = mean(ref[-1][2])  # the reference loop's accuracy: at the end of its budget
    ref_hit = first_reaching(ref, target)
    first_pass = [name for name, r in results.items()
                  if not r["meta"].get("timing_rerun") and "load_average_start" not in r["meta"]]
    figure = doc.parent / "figures" / "speed-accuracy-vs-time.png"
    plot(results, target, figure, first_pass)
    lines = ["# Speed: accuracy against wall time", "",
             "Regenerate: `python benchmarks/speed.py all` (cache under runs/speed; `report` alone redraws). "
             f"AV-Digits, IPC {IPC}, AVDD's loss (DM + 10 JM + 10 MGM), herding init with the IDM factor 2, 128 "
             "real pairs per class; each arm one process with one thread, wall time from the start of the run "
             "(herding's feature training included) to each snapshot; every snapshot evaluated with the AVDD "
             f"protocol (30 epochs, ensemble head, {len(ref[0][2])} trainings, mean ± std).", "",
             f"![accuracy against wall time]({figure.relative_to(doc.parent).as_posix()})", "",
             "| arm | what it changes | iterations | wall (s) | accuracy (%) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for it, seconds, accs in r["points"]:
            lines.append(f"| {name} | {ARMS[name].get('summary', '')} | {it} | {seconds:.0f}{'*' * (name in first_pass)} | "
                         f"{mean_std(accs, count=False)} |")
    if first_pass:
        lines += ["", f"\\* {', '.join(first_pass)}: wall times from the first pass on the loaded machine, before the "
                      "encoder passes were sliced (the snapshots are the same; the times are slower than a rerun's), so "
                      "compare them only with each other."]
    lines += ["", f"Target: the reference loop's accuracy at the end of its budget ({ref[-1][0]} iterations, "
                  f"{ref[-1][1]:.0f} s): **{100 * target:.2f}%**. It first reached that after {ref_hit[0]} "
                  f"iterations ({ref_hit[1]:.0f} s); the last column compares with that earlier point, the "
                  "stricter test.", "",
              "| arm | reaches the target after | wall (s) | speed-up vs the reference's budget | "
              "vs its first time at the target |", "|---|---|---|---|---|"]
    for name, r in results.items():
        hit = first_reaching(r["points"], target)
        lines.append(f"| {name} | {hit[0]} iterations | {hit[1]:.0f} | {ref[-1][1] / hit[1]:.1f}x | "
                     f"{ref_hit[1] / hit[1]:.1f}x |" if hit else
                     f"| {name} | not within {r['points'][-1][0]} iterations | – | – | – |")
    loads = ", ".join(f"{name} {r['meta']['load_average'][0]:.1f}" + (" (timing rerun)" if r["meta"].get("timing_rerun") else "")
                      for name, r in results.items())
    lines += ["", f"Load average (1 min) at the end of each arm's run, on {os.cpu_count()} cores: {loads}. Arms marked "
                  "*timing rerun* were run again for their wall times on a quieter machine; their snapshots are "
                  "checked bit-identical to the evaluated ones."]
    write_section(doc, "speed", "\n".join(lines))
    print("\n".join(lines))


def plot(results: dict, target: float, path: Path, first_pass: list[str]) -> None:
    import matplotlib.ticker  # heavy: imported when the figure is drawn

    from avdistill.reporting.pictures import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for name, r in results.items():
        xs = [p[1] for p in r["points"]]
        ys = [100 * mean(p[2]) for p in r["points"]]
        es = [100 * statistics.pstdev(p[2]) for p in r["points"]]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name + " *" * (name in first_pass),
                    linestyle="--" if name == "reference" else ":" if name in first_pass else "-")
    ax.axhline(100 * target, color="grey", linewidth=0.8, linestyle=":", label="target (reference at its budget)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([50, 100, 200, 500, 1000])
    ax.set_xlabel("wall time (s, log scale), one thread; * first pass, loaded machine")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"AVDD on AV-Digits, IPC {IPC}: accuracy against distillation time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
