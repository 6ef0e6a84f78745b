"""The benchmark grid: methods x IPC x synthetic sets x evaluation heads, cached cell by cell.

Layout under ``out``::

    sets/<method>-ipc<k>-set<s>/   synthetic set, loss log (a distillation resumes from its checkpoint)
    cells/<name>.json              one evaluated cell: accuracies of every run, configs, versions
    report.md, results.json, results.csv

A rerun skips every cell whose file exists with the same settings, so an interrupted grid
continues where it stopped. Set s of a method is distilled with seed ``seed + s``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from avdistill.data import load_dataset
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.errors import ConfigError, DataError
from avdistill.evaluation.protocol import check_eval_config
from avdistill.io import atomic_path, check_output_dir, versions, write_json
from avdistill.methods import SYNTHETIC_FILE, distill, get_method, make_config
from avdistill.reporting.tables import accuracy_table
from avdistill.synthetic import load_synthetic


@dataclasses.dataclass
class BenchGrid:
    data: str = "av-digits"
    methods: tuple[str, ...] = ("random", "dm")
    ipcs: tuple[int, ...] = (1, 10)
    heads: tuple[str, ...] = ("ensemble",)
    sets: int = 1
    runs: int = 3
    whole_data_runs: int = 1
    seed: int = 0
    method_options: dict = dataclasses.field(default_factory=dict)  # {method: {option: value}}
    eval_config: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def _cached(path: Path, settings: dict) -> dict | None:
    """The cell stored at `path` if it was computed with exactly `settings` (compared as JSON).

    An unreadable cell file is recomputed (and replaced), as a cache entry should be.
    """
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            tqdm.write(f"recomputing {path}: unreadable ({exc})")
            return None
        if isinstance(record, dict) and record.get("settings") == json.loads(json.dumps(settings)):
            return record
    return None


def _synthetic_set(dataset, grid: BenchGrid, method: str, ipc: int, s: int, out: Path, device: str, progress: bool):
    """Distil one set, or load it if a finished one with the same settings is on disk."""
    options = grid.method_options.get(method, {})
    config = json.loads(json.dumps(dataclasses.asdict(make_config(get_method(method), options))))
    folder = out / "sets" / f"{method}-ipc{ipc}-set{s}"
    if (folder / SYNTHETIC_FILE).exists():
        try:
            syn = load_synthetic(folder / SYNTHETIC_FILE)
        except DataError as exc:  # a damaged cached set is distilled again
            tqdm.write(f"distilling again: {exc}")
        else:
            if (syn.meta.get("config"), syn.meta.get("seed"), syn.meta.get("source", {}).get("sha256")) == \
                    (config, grid.seed + s, dataset.checksum):
                return syn
    return distill(dataset, method, ipc, grid.seed + s, folder, device, progress, **options)


def run_bench(grid: BenchGrid, out: str | Path, device: str = "cpu", progress: bool = True, verify: bool = True) -> dict:
    out = check_output_dir(out)
    for what, values in (("--methods", grid.methods), ("--ipc", grid.ipcs), ("--heads", grid.heads)):
        if not values:
            raise ConfigError(f"{what} is empty: give at least one, comma-separated")
    if min(grid.ipcs) < 1:
        raise ConfigError(f"--ipc values must be >= 1, got {', '.join(map(str, grid.ipcs))}")
    for head in grid.heads:
        check_eval_config(dataclasses.replace(grid.eval_config, head=head))
    for method in grid.methods:
        make_config(get_method(method), grid.method_options.get(method, {}))  # fail fast on bad options
    dataset = load_dataset(grid.data, verify=verify)
    cells: list[dict] = []
    jobs = [(m, ipc, s) for m in grid.methods for ipc in grid.ipcs for s in range(grid.sets)]
    for method, ipc, s in tqdm(jobs, desc="bench", disable=not progress, dynamic_ncols=True):
        syn = None
        for head in grid.heads:
            cfg = dataclasses.replace(grid.eval_config, head=head)
            settings = {"method": method, "ipc": ipc, "set": s, "head": head, "runs": grid.runs,
                        "seed": grid.seed, "dataset": dataset.checksum, "eval": dataclasses.asdict(cfg),
                        "method_options": grid.method_options.get(method, {})}
            path = out / "cells" / f"{method}-ipc{ipc}-set{s}-{head}.json"
            record = _cached(path, settings)
            if record is None:
                if syn is None:
                    syn = _synthetic_set(dataset, grid, method, ipc, s, out, device, progress)
                t0 = time.perf_counter()
                result = evaluate(syn, dataset, grid.runs, grid.seed + 1000 * s, cfg, device, progress=False)
                record = {"settings": settings, "accuracies": result.accuracies,
                          "distill_seconds": syn.meta.get("wall_seconds"),
                          "evaluate_seconds": round(time.perf_counter() - t0, 2), "versions": versions()}
                write_json(path, record)
            cells.append(record)
    for head in grid.heads:
        cfg = dataclasses.replace(grid.eval_config, head=head)
        settings = {"method": "whole data", "head": head, "runs": grid.whole_data_runs, "seed": grid.seed,
                    "dataset": dataset.checksum, "eval": dataclasses.asdict(cfg)}
        path = out / "cells" / f"whole-data-{head}.json"
        record = _cached(path, settings)
        if record is None and grid.whole_data_runs > 0:
            t0 = time.perf_counter()
            result = evaluate_whole_data(dataset, grid.whole_data_runs, grid.seed, cfg, device, progress)
            record = {"settings": settings, "accuracies": result.accuracies,
                      "evaluate_seconds": round(time.perf_counter() - t0, 2), "versions": versions()}
            write_json(path, record)
        if record is not None:
            cells.append(record)
    return write_report(grid, dataset, cells, out)


def write_report(grid: BenchGrid, dataset, cells: list[dict], out: Path) -> dict:
    """report.md (one table per head: methods x IPC), results.json and results.csv."""
    by_head: dict[str, dict[str, dict[str, list[float]]]] = {}
    for c in cells:
        st = c["settings"]
        column = f"IPC {st['ipc']}" if "ipc" in st else "all"
        row = by_head.setdefault(st["head"], {}).setdefault(st["method"], {})
        row.setdefault(column, []).extend(c["accuracies"])
    columns = [f"IPC {k}" for k in grid.ipcs] + ["all"]
    lines = [f"# Benchmark: {dataset.name}", "",
             f"Test accuracy (%), mean ± std over {grid.sets} synthetic set(s) x {grid.runs} evaluation run(s) "
             f"per cell ({grid.whole_data_runs} run(s) for whole data). Dataset sha256 {dataset.checksum[:12]}…", ""]
    for head, rows in by_head.items():
        lines += [f"## Head: {head}", "", accuracy_table(rows, columns), ""]
    seconds = {}
    for c in cells:
        st = c["settings"]
        if "ipc" in st and c.get("distill_seconds") is not None:
            seconds.setdefault(f"{st['method']} IPC {st['ipc']}", []).append(c["distill_seconds"])
    if seconds:
        lines += ["## Distillation wall time (s per synthetic set)", ""]
        lines += [f"- {k}: {sum(v) / len(v):.1f}" for k, v in seconds.items()] + [""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "ipc", "set", "head", "run", "accuracy"])
    for c in cells:
        st = c["settings"]
        for r, acc in enumerate(c["accuracies"]):
            writer.writerow([st["method"], st.get("ipc", "all"), st.get("set", ""), st["head"], r, acc])
    with atomic_path(out / "results.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    summary = {"grid": {**dataclasses.asdict(grid)}, "cells": cells, "versions": versions()}
    write_json(out / "results.json", summary)
    return summary
