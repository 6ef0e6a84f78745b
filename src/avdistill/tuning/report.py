"""What a study leaves behind: every trial as CSV, the best settings as a TOML file that
``avdistill distill --config`` reads, and a report with the optimisation history and the
parameters' importances as PNG plots (matplotlib; Optuna's own figures need plotly)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import optuna
from tabulate import tabulate

from avdistill.files import atomic_path, versions
from avdistill.reporting.pictures import pyplot, save_png
from avdistill.spread import mean_std


def toml_text(values: dict, comments: list[str] = ()) -> str:
    """Flat TOML (strings, numbers, booleans, lists of those), read back by tomllib."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"TOML has no {v}")
        return json.dumps(v) if isinstance(v, str) else repr(v)

    lines = [f"# {c}" for c in comments] + [f"{key} = {value(v)}" for key, v in values.items()]
    return "\n".join(lines) + "\n"


def write_outputs(study, setup, data: str, out: Path, reason: str) -> dict[str, Path]:
    """trials.csv, best.toml (once a trial completed), history.png, importance.png and report.md in `out`."""
    trials = study.get_trials(deepcopy=False)
    paths = {"csv": _write_csv(trials, out / "trials.csv")}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    paths["history"] = _history_plot(trials, out / "history.png", f"{setup.method} IPC {setup.ipc} on {data}")
    importances = _importances(study, setup.seed) if len(complete) >= 2 else {}
    if importances:
        paths["importance"] = _importance_plot(importances, out / "importance.png")
    best = study.best_trial if complete else None
    paths["defaults"] = _write_settings(setup, data, out / "defaults.toml", {}, [
        "avdistill tune: the method's defaults at the study's budget and fixed options, to compare the best with"])
    if best is not None:
        accuracies = best.user_attrs.get("val_accuracies", [best.value])
        paths["best"] = _write_settings(setup, data, out / "best.toml", best.params, [
            f"avdistill tune: the best of study {study.study_name!r}, trial {best.number}: validation accuracy "
            f"{mean_std(accuracies)} %",
            "chosen on the validation split; rerun: avdistill distill --config THIS_FILE [--seed N] --out DIR"])
    paths["report"] = _write_report(study, trials, best, importances, setup, data, out, paths, reason)
    return paths


def next_commands(best, setup, data: str, out: Path) -> list[str]:
    """The explicit step after tuning: the test split, read once, on the best trial's set; and redistilling."""
    return [f"avdistill evaluate {best.user_attrs['synthetic']} --data {data} --on test --runs 5",
            f"avdistill distill --config {out / 'best.toml'} --seed 1 --out {out / 'best-seed1'}"]


def _write_csv(trials, path: Path) -> Path:
    names = sorted({name for t in trials for name in t.params})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", "val_accuracy", "val_accuracies", "last_check_iteration",
                         "last_check_accuracy", *names, "wall_seconds", "started", "defaults", "error"])
        for t in trials:
            last = max(t.intermediate_values) if t.intermediate_values else None
            complete = t.state == optuna.trial.TrialState.COMPLETE  # a pruned trial's value is its last check's
            writer.writerow([t.number, t.state.name, f"{t.value:.6f}" if complete else "",
                             ";".join(f"{a:.6f}" for a in t.user_attrs.get("val_accuracies", [])),
                             "" if last is None else last,
                             "" if last is None else f"{t.intermediate_values[last]:.6f}",
                             *(t.params.get(n, "") for n in names), t.user_attrs.get("wall_seconds", ""),
                             t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else "",
                             "yes" if t.user_attrs.get("defaults") else "", t.user_attrs.get("error", "")])
    return path


def _history_plot(trials, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in done], [100 * t.value for t in done], s=22, label="complete (final validation)")
    if pruned:
        ax.scatter([t.number for t in pruned], [100 * t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   marker="x", s=26, color="tab:red", label="pruned (its last check)")
    if done:
        order = sorted(done, key=lambda t: t.number)
        best, xs, ys = -math.inf, [], []
        for t in order:
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(100 * best)
        ax.step(xs, ys, where="post", color="tab:green", label="best so far")
        baseline = [t for t in done if t.user_attrs.get("defaults")]
        if baseline:
            ax.axhline(100 * baseline[0].value, color="tab:orange", linestyle="--", linewidth=1,
                       label=f"defaults (trial {baseline[0].number})")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def _importances(study, seed: int) -> dict[str, float]:
    """fANOVA importances of the parameters for the validation accuracy (complete trials)."""
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):  # e.g. every complete trial drew the same values
        return {}


def _importance_plot(importances: dict[str, float], path: Path) -> Path:
    plt = pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.4 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for validation accuracy (fANOVA, sums to 1)")
    ax.set_title("parameter importances")
    ax.grid(axis="x", alpha=0.3)
    return save_png(fig, path)


def _write_settings(setup, data: str, path: Path, params: dict, comments: list[str]) -> Path:
    values = {"method": setup.method, "data": data, "ipc": setup.ipc, "seed": setup.seed, **setup.options(params)}
    with atomic_path(path) as tmp:
        tmp.write_text(toml_text(values, comments))
    return path


def _write_report(study, trials, best, importances, setup, data: str, out: Path, paths: dict, reason: str) -> Path:
    states = [t.state for t in trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    seconds = [t.user_attrs["wall_seconds"] for t in trials if "wall_seconds" in t.user_attrs]
    lines = [f"# Tuning {setup.method} at IPC {setup.ipc} on {data}", "",
             f"Study `{study.study_name}`: {', '.join(f'{n} {s}' for s, n in count.items())} trials ({reason}). "
             f"Scored on the validation split: mean accuracy of {setup.runs} evaluation run(s); "
             f"{setup.checks} intermediate checks per trial (1 run each) for pruning. Budget: "
             f"{setup.budget or 'the method defaults'}; held fixed: "
             f"{', '.join(f'{k}={v}' for k, v in setup.fixed.items()) or 'nothing'}.", "",
             f"Tuning cost: {sum(seconds) / 60:.1f} min of trial wall time ({len(seconds)} trials timed, "
             f"median {statistics.median(seconds):.0f} s)." if seconds else "", ""]
    default = setup.options()
    rows = [[name, str(r), default[name], _fmt(best.params.get(name)) if best else "–",
             f"{importances[name]:.2f}" if name in importances else "–"]
            for name, r in setup.search_space().items()]
    lines += [tabulate(rows, headers=["option", "searched", "default", "best", "importance"], tablefmt="github",
                       disable_numparse=True), ""]
    if best is not None:
        accuracies = best.user_attrs.get("val_accuracies", [best.value])
        lines += [f"Best: trial {best.number}, validation accuracy {mean_std(accuracies)} %; "
                  f"settings in `best.toml`.", "", "Next (the test split, read once, is a separate step):", "",
                  "```", *next_commands(best, setup, data, out), "```", ""]
    lines += _defaults_lines(trials)
    lines += ["![optimisation history](history.png)", ""]
    if "importance" in paths:
        lines += ["![parameter importances](importance.png)", ""]
    lines += ["Every trial: `trials.csv`; each trial's set and its `synthetic.json` (config, seed, versions): "
              "`trials/NNNN/`.", "", f"Written by {', '.join(f'{k} {v}' for k, v in versions().items())}."]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _defaults_lines(trials) -> list[str]:
    """Where the defaults' trial ranks among the complete trials, and the best's lead over it."""
    baseline = next((t for t in trials if t.user_attrs.get("defaults")), None)
    if baseline is None or baseline.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return []
    if baseline.state == optuna.trial.TrialState.PRUNED:
        return [f"Defaults: trial {baseline.number}, pruned (it lagged at its check).", ""]
    values = sorted((t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE), reverse=True)
    accuracies = baseline.user_attrs.get("val_accuracies", [baseline.value])
    return [f"Defaults: trial {baseline.number}, validation accuracy {mean_std(accuracies)} %, rank "
            f"{values.index(baseline.value) + 1} of {len(values)} complete trials, "
            f"{100 * (values[0] - baseline.value):.2f} points under the best.", ""]


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
