"""Re-render a bench report (report.md) from the records its results.json stores, without computing
anything: for a report whose cells were computed by older code, when only the report's format changed.
The header names the commit that computed the cells and the one that re-rendered them.

    python benchmarks/rerender_report.py docs/report --cells-commit 2e7834e
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from avdistill.data import load_dataset
from avdistill.evaluation import EvalConfig, RetrievalConfig
from avdistill.files import atomic_path, source_commit
from avdistill.grid.bench import BenchGrid
from avdistill.reporting.bench_report import bench_report


def stored_grid(saved: dict) -> BenchGrid:
    """The BenchGrid of a results.json (lists back to tuples; options the stored configs lack keep defaults)."""
    known = {f.name for f in dataclasses.fields(BenchGrid)}
    grid = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
    eval_fields = {f.name for f in dataclasses.fields(EvalConfig)}
    grid["eval_config"] = EvalConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in saved["eval_config"].items() if k in eval_fields})
    grid["retrieval_config"] = RetrievalConfig(**saved["retrieval_config"])
    return BenchGrid(**grid)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="folder with results.json; report.md is rewritten there")
    p.add_argument("--cells-commit", required=True, help="the commit whose code computed the stored cells")
    args = p.parse_args()
    results = json.loads((args.report / "results.json").read_text())
    grid = stored_grid(results["grid"])
    dataset = load_dataset(grid.data, mmap=True)
    commit = f"{args.cells_commit} (the cells); re-rendered by benchmarks/rerender_report.py on {source_commit()}"
    text = bench_report(grid, dataset, results["cells"], results["pictures"], args.report, results["command"], commit)
    with atomic_path(args.report / "report.md") as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
