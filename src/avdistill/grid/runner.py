"""The one grid runner behind ``demo``, ``bench`` and multi-set ``evaluate``: a list of cells, each
one evaluation (accuracy with one head, or retrieval) of one training set, computed through the
cell cache (:func:`avdistill.grid.cells.cached_cell`) and returned as records the reports read.

A row's training set (:class:`SetSource`) is a method run (distilled into its folder, or loaded
from there when a finished set with the same method, options, seed, data and code is on disk), a
synthetic set file, or the whole real training split. A set is loaded at most once per run, and
only when one of its cells has to be computed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from avdistill.cache import code_digest
from avdistill.config import flat_dict
from avdistill.data.dataset import AVDataset
from avdistill.errors import DataError
from avdistill.evaluation import EvalConfig, RetrievalConfig, evaluate, evaluate_retrieval, evaluate_whole_data
from avdistill.files import versions
from avdistill.grid.cells import as_json, cached_cell
from avdistill.methods import distill, get_method, make_config
from avdistill.run_folder import RunFolder
from avdistill.synthetic import SyntheticSet, load_synthetic

WHOLE_DATA = "whole data"


@dataclass(frozen=True, eq=False)
class SetSource:
    """A row's training data: `settings` (what its numbers depend on, part of each cell's settings) and
    ``load() -> SyntheticSet`` (None: the whole real training split)."""

    settings: dict
    load: Callable[[], SyntheticSet | None]


def whole_data(settings: dict) -> SetSource:
    return SetSource({"method": WHOLE_DATA, **settings}, lambda: None)


def synthetic_file(syn: SyntheticSet, settings: dict) -> SetSource:
    return SetSource(settings, lambda: syn)


def method_run(dataset: AVDataset, method: str, options: dict, ipc: int, seed: int, folder: RunFolder,
               settings: dict, device: str = "cpu", progress: bool = False) -> SetSource:
    """A set `method` distils into `folder` (or has distilled there before, with the same settings and code)."""
    def load() -> SyntheticSet:
        config = as_json(flat_dict(make_config(get_method(method), options)))
        wanted = (method, config, seed, dataset.checksum, code_digest("."))
        if folder.synthetic.exists():
            try:
                syn = load_synthetic(folder.synthetic)
            except DataError as exc:  # a damaged cached set is distilled again
                tqdm.write(f"distilling again: {exc}")
            else:
                meta = syn.meta
                if (meta.get("method"), meta.get("config"), meta.get("seed"), meta.get("source", {}).get("sha256"),
                        meta.get("code_sha256")) == wanted:
                    return syn
        distill(dataset, method, ipc, seed, folder.path, device, progress, **options)
        return load_synthetic(folder.synthetic)  # loaded back: it knows its path (and so its loss log)
    return SetSource(settings, load)


@dataclass(frozen=True)
class Cell:
    """One evaluation: `kind` "accuracy" (with `config`'s head) or "retrieval" of `source`, filling row `row`
    of table `table`; stored at `path` (None: not cached)."""

    table: str
    row: str
    source: SetSource
    kind: str
    config: EvalConfig
    runs: int
    seed: int
    path: Path | None = None
    retrieval_config: RetrievalConfig | None = None


def cell_settings(cell: Cell) -> dict:
    """What a cell's numbers depend on (cells of equal settings share their file)."""
    if cell.kind == "retrieval":
        return {**cell.source.settings, "kind": "retrieval", "runs": cell.runs, "eval": dataclasses.asdict(cell.config),
                "retrieval": dataclasses.asdict(cell.retrieval_config or RetrievalConfig())}
    return {**cell.source.settings, "head": cell.config.head, "runs": cell.runs, "eval": dataclasses.asdict(cell.config)}


def run_cells(cells: list[Cell], dataset: AVDataset, device: str = "cpu", progress: bool = True,
              desc: str = "cells") -> list[dict]:
    """Every cell's record (``{"table", "row", "settings", ...numbers}``), computing only the uncached ones."""
    loaded: dict[int, SyntheticSet | None] = {}

    def training_set(source: SetSource) -> SyntheticSet | None:
        if id(source) not in loaded:
            loaded[id(source)] = source.load()
        return loaded[id(source)]

    def compute(cell: Cell) -> dict:
        syn = training_set(cell.source)
        start = time.perf_counter()
        if cell.kind == "retrieval":
            result = evaluate_retrieval(syn, dataset, cell.runs, cell.seed, cell.config, cell.retrieval_config,
                                        device, progress=False)
            return {"retrieval": result.runs, "versions": versions()}
        if syn is None:
            result = evaluate_whole_data(dataset, cell.runs, cell.seed, cell.config, device, progress=False)
            timing = {}
        else:
            result = evaluate(syn, dataset, cell.runs, cell.seed, cell.config, device, progress=False)
            timing = {"distill_seconds": syn.meta.get("wall_seconds"), "cache_seconds": syn.meta.get("cache_seconds"),
                      "peak_memory_mib": syn.meta.get("peak_memory_mib")}
        branches = {"branch_accuracies": result.branches} if result.branches else {}
        return {"accuracies": result.accuracies, **branches, **timing,
                "evaluate_seconds": round(time.perf_counter() - start, 2), "versions": versions()}

    records = []
    for cell in tqdm(cells, desc=desc, disable=not progress, dynamic_ncols=True):
        record = cached_cell(cell.path, cell_settings(cell), lambda: compute(cell))
        records.append({"table": cell.table, "row": cell.row, **record})
    return records
