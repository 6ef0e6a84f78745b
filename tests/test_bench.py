"""`avdistill bench`: the grid, its report, and cell caching (a rerun continues, changed settings recompute)."""

from __future__ import annotations

import csv
import json

import pytest

from avdistill.cli import main


def bench_args(data, out, *extra):
    return ["bench", "--data", data, "--methods", "random,dm", "--ipc", "1,2", "--sets", "2", "--runs", "2",
            "--set", "dm.iterations=2", "--set", "dm.real_per_class=4", "--epochs", "2", "--batch-size", "8",
            "--out", str(out), "--quiet", *extra]


def test_bench_grid_report_and_cache(tiny_dataset_file, tmp_path, capsys, monkeypatch):
    data, out = tiny_dataset_file.source_path, tmp_path / "bench"
    assert main(bench_args(data, out)) == 0
    report = capsys.readouterr().out
    assert "## Head: ensemble" in report and "IPC 2" in report and "whole data" in report
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert len(cells) == 2 * 2 * 2 + 1  # methods x ipc x sets, + whole data
    assert (out / "sets" / "dm-ipc2-set1" / "synthetic.safetensors").exists()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 * 2 + 1 and {r["method"] for r in rows} == {"random", "dm", "whole data"}
    # Each table cell pools sets x runs = 4 numbers.
    summary = json.loads((out / "results.json").read_text())
    dm2 = [c for c in summary["cells"] if c["settings"].get("method") == "dm" and c["settings"].get("ipc") == 2]
    assert sum(len(c["accuracies"]) for c in dm2) == 4
    # A rerun evaluates and distils nothing.
    import avdistill.bench as bench

    def refuse(*a, **k):
        raise AssertionError("recomputed a cached cell")

    monkeypatch.setattr(bench, "evaluate", refuse)
    monkeypatch.setattr(bench, "distill", refuse)
    monkeypatch.setattr(bench, "evaluate_whole_data", refuse)
    assert main(bench_args(data, out)) == 0
    # Changed evaluation settings are new cells.
    with pytest.raises(AssertionError, match="recomputed"):
        main(bench_args(data, out, "--runs", "3"))


@pytest.mark.parametrize("extra, words", [
    (["--set", "dm.nope=1"], "cannot set"),
    (["--set", "mtt.iterations=1"], "METHOD one of"),
    (["--heads", "telepathy"], "unknown head"),
    (["--ipc", "one"], "comma-separated integers"),
])
def test_bench_bad_options(tiny_dataset_file, tmp_path, capsys, extra, words):
    assert main(bench_args(tiny_dataset_file.source_path, tmp_path / "b", *extra)) == 2
    assert words in capsys.readouterr().err
