"""The main job on the embedded dataset: DM vs random real subsets vs whole data, one table.

Writes everything under one folder: the synthetic sets (with their loss logs), ``results.json``
(every accuracy, the configs, software versions, wall times) and ``results.md`` (the table).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from avdistill.config import build_config
from avdistill.data import load_dataset
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.io import atomic_path, check_output_dir, versions, write_json
from avdistill.methods import distill
from avdistill.methods.dm import DMConfig
from avdistill.reporting.tables import accuracy_table


def run_demo(out: str | Path = "demo-output", ipcs: tuple[int, ...] = (1, 10), runs: int = 3,
             whole_data_runs: int = 1, dm: DMConfig | None = None, eval_config: EvalConfig | None = None,
             seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Distil AV-Digits with DM at each IPC, evaluate against random subsets and whole data."""
    out = check_output_dir(out)
    dm = build_config(DMConfig, asdict(dm or DMConfig()))  # every value checked before any work
    eval_config = build_config(EvalConfig, asdict(eval_config or EvalConfig()))
    if not ipcs or min(ipcs) < 1 or runs < 1 or whole_data_runs < 0:
        raise ConfigError(f"--ipc values and --runs must be >= 1 and --whole-data-runs >= 0, got --ipc "
                          f"{','.join(map(str, ipcs))}, --runs {runs}, --whole-data-runs {whole_data_runs}")
    started = time.perf_counter()
    dataset = load_dataset("av-digits")
    say = print if progress else (lambda *a, **k: None)
    say(dataset.describe())
    results: dict[str, dict[str, list[float]]] = {"Random": {}, "DM": {}, "Whole data": {}}
    seconds: dict[str, float] = {}
    columns = [f"IPC {ipc}" for ipc in ipcs] + ["all"]
    for ipc, column in zip(ipcs, columns):
        for label, method, options in (("Random", "random", {}), ("DM", "dm", asdict(dm))):
            t0 = time.perf_counter()
            syn = distill(dataset, method, ipc, seed, out / f"{method}-ipc{ipc}", device, progress, **options)
            t1 = time.perf_counter()
            result = evaluate(syn, dataset, runs, seed, eval_config, device, progress)
            seconds[f"{method} ipc{ipc} distill"] = round(t1 - t0, 1)
            seconds[f"{method} ipc{ipc} evaluate"] = round(time.perf_counter() - t1, 1)
            results[label][column] = result.accuracies
            say(f"{label} IPC {ipc}: {result}")
    t0 = time.perf_counter()
    whole = evaluate_whole_data(dataset, whole_data_runs, seed, eval_config, device, progress)
    seconds["whole data evaluate"] = round(time.perf_counter() - t0, 1)
    results["Whole data"]["all"] = whole.accuracies
    say(f"Whole data: {whole}")
    seconds["total"] = round(time.perf_counter() - started, 1)
    table = accuracy_table(results, columns)
    caption = (f"AV-Digits test accuracy (%), AV ensemble head, mean ± std over {runs} evaluation runs "
               f"({whole_data_runs} for whole data); DM: {dm.iterations} iterations, seed {seed}.")
    summary = {
        "dataset": {"name": dataset.name, "sha256": dataset.checksum, "summary": dataset.describe()},
        "accuracies": results,
        "dm_config": asdict(dm),
        "eval_config": asdict(eval_config),
        "runs": runs,
        "whole_data_runs": whole_data_runs,
        "seed": seed,
        "seconds": seconds,
        "versions": versions(),
        "table": table,
    }
    write_json(out / "results.json", summary)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(f"{caption}\n\n{table}\n\nWall time: {seconds['total']:.0f} s\n")
    print("\n" + caption + "\n\n" + table + f"\n\nWall time: {seconds['total']:.0f} s; outputs in {out}/")
    return summary
