"""Time to accuracy (issue 18, item 4): wall seconds, cold, for avdistill's AVDD recipe to reach the
test accuracy that AVDD reaches at the paper's recipe.

Two arms on the same dataset, IPC and seeds:

- **reference**: AVDD at the paper's recipe as its public code spends each iteration
  (``reference.py``: fresh frozen encoders, one DSA seed per iteration, per-class passes and
  per-class SGD steps; lr 0.2, momentum 0.5, herding init, IDM factor 2, min(128, class size)
  real pairs per class), for ``--ref-iterations``; its final test accuracy is the target.
- **avdistill**: ``avdistill distill --method avdd`` at its ``cpu`` budget (100 iterations, 64 real
  pairs per class, chosen on the validation split: docs/TUNING.md), its real-means cache a fresh
  empty folder.

Each arm's synthetic set is snapshotted every ``--every`` iterations (and at iteration 0, the
initial set) with the wall seconds from the start of the run: the initialisation (herding's
feature training included, its in-process cache emptied before every run) and the iterations,
not the snapshot copies. The avdistill arm is snapshotted through the loop's ``Watch`` checks
(the hook ``avdistill tune`` validates with), and at the loop's entry and exit. Every snapshot
is then evaluated on the test split (AVDD protocol, ensemble head, ``--runs`` trainings, seeded
by the set), outside the timed runs.

Both arms run in one process, one set (seed) after the other, reference then avdistill for each
seed, after one untimed warm-up iteration of each (first-call costs), so machine load falls on
both alike. The JSON (``--json``) is rewritten after every set; a rerun with the same settings (``--sets``
aside) and the same code continues from the sets it holds.

  python benchmarks/time_to_accuracy.py                         # av-digits-hard, IPC 10, 3 sets, 2 runs
  python benchmarks/time_to_accuracy.py --report-from benchmarks/results/time-to-accuracy.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from docsection import shown_arguments, write_section

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("reference", "avdistill")
SECTION = "time-to-accuracy"
MEANINGFUL_SECONDS = 0.05  # below this a mark is the initial set of a recipe that draws it without work
# with the code: what a rerun continues
SETTINGS = ("data", "ipc", "ref_iterations", "iterations", "every", "ref_every", "runs", "recipe_options")
# AVDD's paper recipe (its code's defaults), stated rather than read from avdistill's config defaults
PAPER = {"lr_audio": 0.2, "lr_frames": 0.2, "momentum": 0.5, "init": "herding", "factor": 2, "real_per_class": 128}


class Snapshots:
    """Synthetic sets at chosen iterations with the wall seconds since `start`, copying time excluded."""

    def __init__(self):
        self.start = time.perf_counter()
        self.paused = 0.0
        self.points: list[dict] = []

    def take(self, iteration: int, audio, frames) -> None:
        now = time.perf_counter()
        seconds = now - self.start - self.paused
        self.points.append({"iteration": iteration, "seconds": seconds,
                            "audio": audio.detach().clone(), "frames": frames.detach().clone()})
        self.paused += time.perf_counter() - now


def reference_arm(dataset, ipc: int, iterations: int, every: int, seed: int) -> tuple[list[dict], object, int]:
    """AVDD at the paper's recipe, the AVDD code's per-iteration work; snapshots every `every` iterations."""
    import reference
    from avdistill.cache import forget_memory

    forget_memory()  # herding's features: trained inside the timed run
    snaps = Snapshots()

    def on_iteration(it, audio, frames):
        if it % every == 0 or it == iterations:
            snaps.take(it, audio, frames)

    out = reference.run(dataset, "avdd", ipc, {**PAPER, "iterations": iterations}, seed, on_iteration=on_iteration)
    return snaps.points, out["labels"], PAPER["factor"]


@contextlib.contextmanager
def loop_entry_and_exit(snaps: Snapshots):
    """Instrumentation: snapshot the set where the shared loop starts (the initial set, iteration 0) and ends."""
    from avdistill.methods import matching

    original = matching.optimise_synthetic

    def watched(audio, frames, *args, **kwargs):
        snaps.take(0, audio, frames)
        audio, frames = original(audio, frames, *args, **kwargs)
        snaps.take(kwargs["iterations"], audio, frames)
        return audio, frames

    matching.optimise_synthetic = watched
    try:
        yield
    finally:
        matching.optimise_synthetic = original


def avdistill_arm(dataset, ipc: int, iterations: int | None, every: int, seed: int,
                  cache: Path, recipe: dict) -> tuple[list[dict], object, int]:
    """``avdistill distill --method avdd`` at the cpu budget (`iterations`: its own when None) with the `recipe`'s
    options (e.g. a tune's best.toml; none: AVDD's defaults), cold; snapshots every `every` iterations."""
    import avdistill
    from avdistill.cache import forget_memory
    from avdistill.methods.watch import Watch

    forget_memory()
    snaps = Snapshots()
    watch = Watch(check=snaps.take, check_every=every)  # called before the last iteration only; the exit is below
    with loop_entry_and_exit(snaps):
        options = {**recipe, "real_cache": str(cache), **({"iterations": iterations} if iterations else {})}
        syn = avdistill.distill(dataset, "avdd", ipc, seed, progress=False, budget="cpu", watch=watch, **options)
    return snaps.points, syn.labels, syn.factor


def warm_up(dataset, ipc: int) -> None:
    """One untimed iteration of each arm (allocator, kernel selection), the herding init's feature training cut
    to one epoch (its code path, a tenth of its cost), leaving no cache behind."""
    import avdistill
    import reference
    from avdistill.cache import forget_memory

    quick = {"iterations": 1, "herding_epochs": 1}
    reference.run(dataset, "avdd", ipc, {**PAPER, **quick}, seed=0)
    forget_memory()
    avdistill.distill(dataset, "avdd", ipc, 0, progress=False, budget="cpu", real_cache="off", **quick)


def evaluate_points(dataset, points: list[dict], labels, factor: int, runs: int, seed: int, seen: list) -> None:
    """Test accuracies of every snapshot (AVDD protocol), in place; the tensors are dropped. A snapshot equal to
    one in `seen` (both arms' initial set: the same herding init) takes its accuracies, as the evaluation is
    deterministic under the seed; `seen` gains the others."""
    import torch

    from avdistill.evaluation import evaluate
    from avdistill.synthetic import SyntheticSet

    for p in points:
        syn = SyntheticSet(p.pop("audio"), p.pop("frames"), labels, list(dataset.classes), dataset.preprocessing,
                           factor=factor)
        same = next((accuracies for other, accuracies in seen if other.factor == syn.factor and all(
            torch.equal(getattr(other, t), getattr(syn, t)) for t in ("audio", "frames", "labels"))), None)
        p["accuracies"] = same or evaluate(syn, dataset, runs, seed, progress=False, on="test").accuracies
        if same is None:
            seen.append((syn, p["accuracies"]))


def measure(args, saved: dict | None) -> dict:
    """Every set (seed) not in `saved`: both arms timed, then their snapshots evaluated; saved after each."""
    from tqdm.auto import tqdm

    from avdistill.data import load_dataset
    from avdistill.files import source_commit, versions, write_json

    dataset = load_dataset(args.data)
    settings = {name: getattr(args, name) for name in SETTINGS}
    result = saved or {"settings": settings, "code": code_identity(), "versions": versions(),
                       "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
                       "cpu_count": os.cpu_count(), "dataset": {"name": dataset.name, "sha256": dataset.checksum},
                       "points": [], "loads": []}
    result.update(argv=sys.argv[1:], commit=source_commit(), sets=args.sets)
    done = {p["set"] for p in result["points"]}
    todo = [s for s in range(args.sets) if s not in done]
    if todo:
        warm_up(dataset, args.ipc)
    with tempfile.TemporaryDirectory() as caches:
        for seed in tqdm(todo, desc="sets", dynamic_ncols=True):
            timed = {}
            for arm in ARMS:
                load = os.getloadavg()[0]
                if arm == "reference":
                    timed[arm] = reference_arm(dataset, args.ipc, args.ref_iterations, args.ref_every, seed)
                else:
                    timed[arm] = avdistill_arm(dataset, args.ipc, args.iterations, args.every, seed,
                                               Path(tempfile.mkdtemp(dir=caches)), args.recipe_options)
                result["loads"].append({"set": seed, "arm": arm, "load": load})
                last = timed[arm][0][-1]
                tqdm.write(f"set {seed} {arm}: {last['iteration']} iterations in {last['seconds']:.1f} s "
                           f"(load {load:.1f})", file=sys.stderr)
            seen: list = []
            for arm, (points, labels, factor) in timed.items():
                evaluate_points(dataset, tqdm(points, desc=f"evaluate set {seed} {arm}", leave=False), labels, factor,
                                args.runs, seed, seen)
                result["points"] += [{"arm": arm, "set": seed, **p} for p in points]
            write_json(args.json, result)
    return result



def curve(points: list[dict], arm: str) -> list[dict]:
    """Per iteration mark of `arm`: seconds and accuracy (each set's mean over runs) across the sets."""
    marks = sorted({p["iteration"] for p in points if p["arm"] == arm})
    rows = []
    for it in marks:
        at = [p for p in points if p["arm"] == arm and p["iteration"] == it]
        rows.append({"iteration": it, "seconds": [p["seconds"] for p in at],
                     "accuracy": [statistics.fmean(p["accuracies"]) for p in at]})
    return rows


def spread(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def beyond_noise(ours: list[float], target: list[float]) -> bool:
    """Whether the mean gap exceeds both stds (the only case that says more than noise)."""
    points = statistics.fmean(ours) - statistics.fmean(target)
    return abs(points) > max(spread(ours), spread(target)) and min(len(ours), len(target)) > 1


def gap(ours: list[float], target: list[float]) -> str:
    """The accuracy gap in points, and whether it exceeds both stds."""
    points = 100 * (statistics.fmean(ours) - statistics.fmean(target))
    return f"{points:+.2f} points against the target, {'beyond' if beyond_noise(ours, target) else 'within'} the stds"


def plot(curves: dict[str, list[dict]], target: float, path: Path, title: str) -> None:
    """Test accuracy (%) against wall seconds, mean over sets with a band of ± one std, both arms."""
    from avdistill.reporting.pictures import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for arm, rows in curves.items():
        xs = [statistics.fmean(r["seconds"]) for r in rows]
        ys = [100 * statistics.fmean(r["accuracy"]) for r in rows]
        es = [100 * spread(r["accuracy"]) for r in rows]
        line, = ax.plot(xs, ys, marker="o", label=arm, linestyle="--" if arm == "reference" else "-")
        ax.fill_between(xs, [y - e for y, e in zip(ys, es)], [y + e for y, e in zip(ys, es)],
                        color=line.get_color(), alpha=0.2)
    ax.axhline(100 * target, color="grey", linewidth=0.8, linestyle=":", label="target: reference's final accuracy")
    ax.set_xlim(left=0)
    ax.set_xlabel("wall seconds from the start of the run (initialisation included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def report(result: dict, doc: Path, figure: Path) -> str:
    """The docs section (and the figure) from the measured points."""
    from avdistill.methods.avdd import BUDGETS
    from avdistill.spread import mean_std

    s = result["settings"]
    budget = " ".join(f"`--{k.replace('_', '-')} {v}`" for k, v in BUDGETS["cpu"].items())
    changed = f", run for {s['iterations']} iterations (`--iterations`)" if s["iterations"] else ""
    recipe = s.get("recipe_options") or {}
    if recipe:
        changed += (", with the recipe of `--recipe` (chosen on the validation split by `avdistill tune`, "
                    "docs/TUNING.md): " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in recipe.items()))
    curves = {arm: curve(result["points"], arm) for arm in ARMS}
    final = curves["reference"][-1]
    target = statistics.fmean(final["accuracy"])
    ref_seconds = statistics.fmean(final["seconds"])
    plot(curves, target, figure, f"AVDD on {result['dataset']['name']}, IPC {s['ipc']}: test accuracy against wall time")
    reached = next((r for r in curves["avdistill"] if statistics.fmean(r["accuracy"]) >= target), None)
    loads = [x["load"] for x in result["loads"]]
    lines = [f"## Time to accuracy: AVDD at IPC {s['ipc']}", "",
             f"Regenerate: `OMP_NUM_THREADS={result['threads']} python benchmarks/time_to_accuracy.py "
             f"{shown_arguments()}` (commit {result['commit']}; {result['threads']} thread(s) on "
             f"{result['cpu_count']} cores); raw points in the JSON it writes. {result['dataset']['name']}, "
             f"{result['sets']} synthetic sets per arm (seeds {', '.join(map(str, range(result['sets'])))}), every "
             f"snapshot evaluated on the **test** split with the AVDD protocol (30 epochs, ensemble head, {s['runs']} "
             "trainings seeded by the set); mean ± std over the sets of each set's mean over its trainings.", "",
             "- **reference**: AVDD at the paper's recipe as its code spends each iteration "
             "(`benchmarks/reference.py`: per-class passes and SGD steps, lr 0.2, momentum 0.5, herding init, factor 2, "
             f"min(128, class size) real pairs per class), {s['ref_iterations']} iterations.",
             f"- **avdistill**: `avdistill distill --method avdd` at its `cpu` budget ({budget}; chosen on the "
             f"validation split, docs/TUNING.md){changed}, its real-means cache empty at the start.",
             "", "Seconds run from the start of each run to the snapshot, cold: the initialisation (herding's feature "
             "training, its in-process cache emptied first) and the iterations; the snapshots' evaluation is not "
             "timed. Both arms ran in one process, alternating per set (reference then avdistill for each seed, "
             f"after one untimed warm-up iteration of each), so machine load affects both alike (load average "
             f"{min(loads):.1f}-{max(loads):.1f} at the arms' starts).", "",
             f"![test accuracy against wall seconds]({os.path.relpath(figure, doc.parent)})", "",
             "| arm | iteration | seconds | test accuracy (%) |", "|---|---|---|---|"]
    for arm, rows in curves.items():
        for r in rows:
            lines.append(f"| {arm} | {r['iteration']} | {mean_std(r['seconds'], scale=1, digits=1, count=False)} | "
                         f"{mean_std(r['accuracy'])} |")
    lines += ["", f"**Target**: the reference's final test accuracy, {mean_std(final['accuracy'])} after "
                  f"{final['iteration']} iterations, {mean_std(final['seconds'], scale=1, digits=1)} s."]
    if reached is None:
        last = curves["avdistill"][-1]
        lines.append(f"**Not reached**: avdistill's mean stays below it at every mark (at iteration {last['iteration']}: "
                     f"{mean_std(last['accuracy'])}, {gap(last['accuracy'], final['accuracy'])}), so no "
                     "time-to-accuracy ratio exists for this recipe.")
    else:
        seconds = statistics.fmean(reached["seconds"])
        text = (f"avdistill's mean first reaches it at iteration {reached['iteration']} "
                f"({mean_std(reached['accuracy'])}, {gap(reached['accuracy'], final['accuracy'])}), after "
                f"{mean_std(reached['seconds'], scale=1, digits=1)} s")
        if seconds >= MEANINGFUL_SECONDS:
            text += (f": **{ref_seconds / seconds:.1f}x** less wall time than the reference's {ref_seconds:.1f} s "
                     "(goal >= 5x).")
        else:  # a recipe whose initial set already matches: a ratio over ~0 s says nothing about speed
            text += (": its initial set, drawn without optimisation, already matches the target within noise, so a "
                     "ratio over that time says nothing about speed.")
        lines.append(text)
        beyond = next((r for r in curves["avdistill"] if statistics.fmean(r["seconds"]) >= MEANINGFUL_SECONDS
                       and statistics.fmean(r["accuracy"]) > target and beyond_noise(r["accuracy"], final["accuracy"])),
                      None)
        if beyond is None:
            lines.append("It never exceeds the target by more than both standard deviations.")
        else:
            seconds = statistics.fmean(beyond["seconds"])
            lines.append(f"It first exceeds the target by more than both standard deviations at iteration "
                         f"{beyond['iteration']} ({mean_std(beyond['accuracy'])}), after "
                         f"{mean_std(beyond['seconds'], scale=1, digits=1)} s: **{ref_seconds / seconds:.1f}x** less "
                         f"wall time than the reference (goal >= 5x).")
    text = "\n".join(lines)
    write_section(doc, SECTION, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="av-digits-hard", help="dataset (name or prepared file)")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--ref-iterations", type=int, default=100, help="iterations of the reference arm")
    parser.add_argument("--iterations", type=int, help="iterations of the avdistill arm (default: its cpu budget's)")
    parser.add_argument("--every", type=int, default=25, help="iterations between snapshots")
    parser.add_argument("--ref-every", type=int,
                        help="iterations between the reference arm's snapshots (default: --every); only its final "
                             "accuracy is the target")
    parser.add_argument("--recipe", help="TOML of the avdistill arm's AVDD options, e.g. a tune's best.toml "
                                         "(default: AVDD's defaults at the cpu budget)")
    parser.add_argument("--sets", type=int, default=3, help="synthetic sets per arm (seeds 0..sets-1)")
    parser.add_argument("--runs", type=int, default=2, help="evaluation trainings per snapshot")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "time-to-accuracy.json"),
                        help="every point; rewritten after each set, and continued from by a rerun")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--figure", help="the PNG (default: figures/time-to-accuracy.png next to --doc)")
    parser.add_argument("--report-from", help="rewrite the section and figure from an earlier run's JSON")
    args = parser.parse_args()
    args.ref_every = args.ref_every or args.every
    args.recipe_options = recipe_options(args.recipe) if args.recipe else {}
    for name in ("ipc", "ref_iterations", "iterations", "every", "ref_every", "sets", "runs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    from avdistill.errors import AVDistillError

    doc = Path(args.doc)
    figure = Path(args.figure) if args.figure else doc.parent / "figures" / "time-to-accuracy.png"
    if args.report_from:
        if not Path(args.report_from).is_file():
            parser.error(f"--report-from {args.report_from}: no such file")
        result = json.loads(Path(args.report_from).read_text())
        sys.argv[1:] = result["argv"]
    else:
        try:
            result = measure(args, resumable(args))
        except AVDistillError as exc:  # e.g. a missing dataset file, an IPC its classes cannot fill at factor 2
            raise SystemExit(f"time_to_accuracy.py: {exc}") from None
    print(report(result, doc, figure))


def recipe_options(path: str) -> dict:
    """The AVDD options in a TOML recipe (a tune's best.toml: its run keys dropped; the budget's iterations too,
    which --iterations sets), read and checked as ``--config`` files are."""
    from avdistill.cli.configfile import check_file_options, read_config_file
    from avdistill.config import flat_dict
    from avdistill.errors import AVDistillError
    from avdistill.methods import get_method
    from avdistill.methods.base import make_config
    from avdistill.methods.budgets import budget_options

    spec = get_method("avdd")
    try:
        values, _ = read_config_file(path)
        if values.pop("method", "avdd") != "avdd":
            raise SystemExit(f"time_to_accuracy.py: --recipe {path}: not an AVDD recipe")
        for key in ("data", "ipc", "seed", "iterations", "real_cache"):
            values.pop(key, None)
        options = check_file_options(values, spec.config_class, path, "an AVDD recipe")
        make_config(spec, options)  # the method's own checks across options, before any work
    except AVDistillError as exc:
        raise SystemExit(f"time_to_accuracy.py: --recipe {path}: {exc}") from None
    cpu = flat_dict(make_config(spec, budget_options(spec, "cpu")))
    return {k: v for k, v in options.items() if cpu.get(k) != v}  # what the recipe changes


def code_identity() -> dict:
    """sha256 of the package's sources and of the two benchmark files: a rerun continues only with the same code."""
    import hashlib

    from avdistill.cache import code_digest

    here = Path(__file__).resolve().parent
    mine = hashlib.sha256(b"".join((here / f).read_bytes() for f in (Path(__file__).name, "reference.py"))).hexdigest()
    return {"avdistill": code_digest("."), "benchmarks": mine}


def resumable(args) -> dict | None:
    """The earlier run in ``--json`` if it has these settings and code, with its sets below ``--sets``, else None."""
    path = Path(args.json)
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved.get("settings") != {name: getattr(args, name) for name in SETTINGS} or saved.get("code") != code_identity():
        return None
    saved["points"] = [p for p in saved["points"] if p["set"] < args.sets]
    saved["loads"] = [x for x in saved["loads"] if x["set"] < args.sets]
    print(f"continuing {path}: sets {sorted({p['set'] for p in saved['points']})} already measured", file=sys.stderr)
    return saved


if __name__ == "__main__":
    main()
