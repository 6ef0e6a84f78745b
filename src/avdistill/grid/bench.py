"""The benchmark grid: methods x IPC x synthetic sets x evaluation heads (+ declared ablation rows,
retrieval and whole data), run by the grid runner and cached cell by cell.

Layout under ``out`` (the cache)::

    sets/<row>-ipc<k>-set<s>/      a run folder (:class:`avdistill.run_folder.RunFolder`): synthetic set, loss
                                   log (a distillation resumes from its checkpoint), initial.safetensors
    cells/<row>-ipc<k>-set<s>-<head>[-<protocol>].json     one evaluated cell: accuracies of every run, configs
    cells/<row>-ipc<k>-set<s>-retrieval[-<protocol>].json  one retrieval cell: R@1, R@5, median rank of every run

where ``<protocol>`` (:func:`protocol_tag`) names an evaluation protocol other than the AVDD protocol's
defaults (``--steps``, ``--on val``, other learning rates ...), so benches of one folder under several
protocols keep their cells side by side instead of replacing each other's.

and under ``report`` (default: ``out``): report.md (:mod:`avdistill.reporting.bench_report`),
results.json, results.csv (:mod:`avdistill.reporting.results`), pictures/ (:mod:`avdistill.grid.pictures`).

A rerun skips every cell whose file exists with the same settings and code, so an interrupted
grid continues where it stopped. Set s of a method is distilled with seed ``seed + s`` and
evaluated with seed ``seed + 1000 s``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

from avdistill.config import validate
from avdistill.data import load_dataset
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig, RetrievalConfig
from avdistill.files import atomic_path, check_output_dir, source_commit
from avdistill.grid.cells import as_json
from avdistill.grid.pictures import write_pictures
from avdistill.grid.runner import Cell, SetSource, method_run, run_cells, whole_data
from avdistill.methods import get_method, make_config
from avdistill.reporting.bench_report import WHOLE_DATA, av_head, bench_report
from avdistill.reporting.results import write_results
from avdistill.run_folder import RunFolder


@dataclasses.dataclass
class BenchGrid:
    data: str = "av-digits"
    methods: tuple[str, ...] = ("random", "dm")
    ipcs: tuple[int, ...] = (1, 10)
    heads: tuple[str, ...] = ("ensemble",)
    sets: int = 3  # the papers' protocol: 3 synthetic sets x 5 evaluation runs
    runs: int = 5
    whole_data_runs: int = 1
    seed: int = 0
    method_options: dict = dataclasses.field(default_factory=dict)  # {method: {option: value}}
    eval_config: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    ablations: tuple[str, ...] = ()  # methods whose declared ablation rows to run
    retrieval: bool = False
    retrieval_config: RetrievalConfig = dataclasses.field(default_factory=RetrievalConfig)
    pictures: bool = True  # per synthesis method, at `picture_ipc`, set 0
    picture_ipc: int = 0  # 0: the largest IPC of the grid
    clips_per_class: int = 1  # WAV and mp4 files per class and method in the report (0: none)
    videos: bool = True
    griffin_lim_iters: int = 32


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: a method with options; `key` names its folders and cells."""

    table: str  # "main" or the method whose ablation this row is
    label: str
    method: str
    options: dict
    key: str


def grid_rows(grid: BenchGrid) -> list[Row]:
    rows = [Row("main", m, m, dict(grid.method_options.get(m, {})), m) for m in grid.methods]
    for method in grid.ablations:
        declared = get_method(method).ablations
        if not declared:
            raise ConfigError(f"--ablations {method}: the method declares no ablation rows")
        base = grid.method_options.get(method, {})
        for label, overrides in declared.items():
            options = {**base, **overrides}
            slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            key = method if options == base else f"{method}-ablation-{slug}"
            rows.append(Row(method, label, method, options, key))
    return rows


def check_grid(grid: BenchGrid) -> list[Row]:
    """The grid's rows, after every check that can fail before any work starts."""
    for what, values in (("--methods", grid.methods), ("--ipc", grid.ipcs), ("--heads", grid.heads)):
        if not values:
            raise ConfigError(f"{what} is empty: give at least one, comma-separated")
    if min(grid.ipcs) < 1:
        raise ConfigError(f"--ipc values must be >= 1, got {', '.join(map(str, grid.ipcs))}")
    for head in grid.heads:
        validate(dataclasses.replace(grid.eval_config, head=head))
    validate(grid.retrieval_config)
    rows = grid_rows(grid)
    for row in rows:
        make_config(get_method(row.method), row.options)
    if grid.picture_ipc and grid.picture_ipc not in grid.ipcs:
        raise ConfigError(f"--picture-ipc {grid.picture_ipc} is not one of the grid's IPCs {list(grid.ipcs)}")
    return rows


def method_sets(grid: BenchGrid, dataset: AVDataset, rows: list[Row], out: Path, device: str,
                progress: bool) -> dict[tuple[str, int, int], SetSource]:
    """(row key, ipc, set) -> the set that row distils into ``out/sets/``."""
    sources = {}
    for row in rows:
        for ipc in grid.ipcs:
            for s in range(grid.sets):
                settings = {"method": row.method, "seed": grid.seed, "dataset": dataset.checksum, "ipc": ipc, "set": s,
                            "method_options": as_json(row.options)}
                folder = RunFolder(out / "sets" / f"{row.key}-ipc{ipc}-set{s}")
                sources[(row.key, ipc, s)] = method_run(dataset, row.method, row.options, ipc, grid.seed + s, folder,
                                                        settings, device, progress)
    return sources


def protocol_tag(config: EvalConfig) -> str:
    """'' for the AVDD protocol's defaults (any head), else '-' + 8 hex digits of the protocol's settings."""
    settings = {**dataclasses.asdict(config), "head": None}
    if settings == {**dataclasses.asdict(EvalConfig()), "head": None}:
        return ""
    return "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def grid_cells(grid: BenchGrid, dataset: AVDataset, rows: list[Row], sources: dict, cells_dir: Path) -> list[Cell]:
    """Every cell of the grid, in the order they are computed."""
    cells, tag = [], protocol_tag(grid.eval_config)
    for row in rows:
        heads = grid.heads if row.table == "main" else (av_head(grid.heads),)
        for ipc in grid.ipcs:
            for s in range(grid.sets):
                source, stem = sources[(row.key, ipc, s)], f"{row.key}-ipc{ipc}-set{s}"
                cells += [Cell(row.table, row.label, source, "accuracy", dataclasses.replace(grid.eval_config, head=h),
                               grid.runs, grid.seed + 1000 * s, cells_dir / f"{stem}-{h}{tag}.json") for h in heads]
                if grid.retrieval and row.table == "main":
                    cells.append(Cell(row.table, row.label, source, "retrieval", grid.eval_config, grid.runs,
                                      grid.seed + 1000 * s, cells_dir / f"{stem}-retrieval{tag}.json", grid.retrieval_config))
    if grid.whole_data_runs > 0:
        whole = whole_data({"seed": grid.seed, "dataset": dataset.checksum})
        cells += [Cell("main", WHOLE_DATA, whole, "accuracy", dataclasses.replace(grid.eval_config, head=h),
                       grid.whole_data_runs, grid.seed, cells_dir / f"whole-data-{h}{tag}.json") for h in grid.heads]
        if grid.retrieval:
            cells.append(Cell("main", WHOLE_DATA, whole, "retrieval", grid.eval_config, grid.whole_data_runs,
                              grid.seed, cells_dir / f"whole-data-retrieval{tag}.json", grid.retrieval_config))
    return cells


def run_bench(grid: BenchGrid, out: str | Path, device: str = "cpu", progress: bool = True,
              report: str | Path | None = None, command: str = "", verify: bool = True) -> dict:
    """Fill the grid (skipping cached cells) and write the report; returns the results summary."""
    out = check_output_dir(out)
    rows = check_grid(grid)
    commit = source_commit()  # at the start: the code that computes the cells
    dataset = load_dataset(grid.data, mmap=True, verify=verify)  # mapped, as the commands do (cli.common.load_data)
    sources = method_sets(grid, dataset, rows, out, device, progress)
    records = run_cells(grid_cells(grid, dataset, rows, sources, out / "cells"), dataset, device, progress, "bench")
    report = Path(report) if report is not None else out
    pictures = []
    if grid.pictures:
        ipc = grid.picture_ipc or max(grid.ipcs)
        shown = [(row.label, f"{row.key}-ipc{ipc}", sources[(row.key, ipc, 0)].load()) for row in rows
                 if row.table == "main" and get_method(row.method).kind == "synthesis"]
        pictures = write_pictures(dataset, shown, report, ipc, grid.clips_per_class, grid.videos,
                                  grid.griffin_lim_iters, progress)
    report.mkdir(parents=True, exist_ok=True)
    with atomic_path(report / "report.md") as tmp:
        tmp.write_text(bench_report(grid, dataset, records, pictures, report, command, commit))
    return write_results(report, {"grid": as_json(dataclasses.asdict(grid)), "command": command, "commit": commit,
                                  "pictures": [{**p, "files": as_json(p["files"])} for p in pictures]}, records)
