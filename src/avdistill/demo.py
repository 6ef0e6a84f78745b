"""The main job on the embedded dataset: DM vs random real subsets vs whole data, one table.

Run by the grid runner (:mod:`avdistill.grid.runner`) and written under one folder: a run folder
per set (``random-ipc1/``, ``dm-ipc1/``, ...: synthetic set and loss log), the cached cells
(``cells/``, so a rerun continues), ``results.json`` (every accuracy, the configs, software
versions, wall times), ``results.csv`` and ``results.md`` (the table).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from avdistill.config import flat_dict, validate
from avdistill.data import load_dataset
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig
from avdistill.files import atomic_path, check_output_dir
from avdistill.grid.runner import Cell, method_run, run_cells, whole_data
from avdistill.methods.dm import DMConfig
from avdistill.reporting.results import write_results
from avdistill.reporting.tables import accuracy_table
from avdistill.run_folder import RunFolder

LABELS = {"random": "Random", "dm": "DM"}


def run_demo(out: str | Path = "demo-output", ipcs: tuple[int, ...] = (1, 10), runs: int = 3,
             whole_data_runs: int = 1, dm: DMConfig | None = None, eval_config: EvalConfig | None = None,
             seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Distil AV-Digits with DM at each IPC, evaluate against random subsets and whole data."""
    out = check_output_dir(out)
    dm, eval_config = validate(dm or DMConfig()), validate(eval_config or EvalConfig())
    if not ipcs or min(ipcs) < 1 or runs < 1 or whole_data_runs < 0:
        raise ConfigError(f"--ipc values and --runs must be >= 1 and --whole-data-runs >= 0, got --ipc "
                          f"{','.join(map(str, ipcs))}, --runs {runs}, --whole-data-runs {whole_data_runs}")
    started = time.perf_counter()
    dataset = load_dataset("av-digits")
    if progress:
        print(dataset.describe())
    cells = []
    for ipc in ipcs:
        for method, options in (("random", {}), ("dm", flat_dict(dm))):
            settings = {"method": method, "seed": seed, "dataset": dataset.checksum, "ipc": ipc,
                        "method_options": options}
            source = method_run(dataset, method, options, ipc, seed, RunFolder(out / f"{method}-ipc{ipc}"), settings,
                                device, progress)
            cells.append(Cell("main", LABELS[method], source, "accuracy", eval_config, runs, seed,
                              out / "cells" / f"{method}-ipc{ipc}.json"))
    if whole_data_runs:
        cells.append(Cell("main", "Whole data", whole_data({"seed": seed, "dataset": dataset.checksum}), "accuracy",
                          eval_config, whole_data_runs, seed, out / "cells" / "whole-data.json"))
    records = run_cells(cells, dataset, device, progress, "demo")
    columns = [f"IPC {ipc}" for ipc in ipcs] + ["all"]
    results: dict[str, dict[str, list[float]]] = {"Random": {}, "DM": {}, "Whole data": {}}
    for record in records:
        ipc = record["settings"].get("ipc")
        results[record["row"]][f"IPC {ipc}" if ipc else "all"] = record["accuracies"]
    seconds = {"total": round(time.perf_counter() - started, 1)}
    table = accuracy_table(results, columns)
    caption = (f"AV-Digits test accuracy (%), AV ensemble head, mean ± std over {runs} evaluation runs "
               f"({whole_data_runs} for whole data); DM: {dm.iterations} iterations, seed {seed}.")
    summary = write_results(out, {
        "dataset": {"name": dataset.name, "sha256": dataset.checksum, "summary": dataset.describe()},
        "accuracies": results, "dm_config": flat_dict(dm), "eval_config": asdict(eval_config), "runs": runs,
        "whole_data_runs": whole_data_runs, "seed": seed, "seconds": seconds, "table": table}, records)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(f"{caption}\n\n{table}\n\nWall time: {seconds['total']:.0f} s\n")
    print("\n" + caption + "\n\n" + table + f"\n\nWall time: {seconds['total']:.0f} s; outputs in {out}/")
    return summary
