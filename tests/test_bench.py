"""`avdistill bench`: the grid, its report (tables, pictures, sound), and cell caching (a rerun
continues, changed settings recompute)."""

from __future__ import annotations

import csv
import json
import re
import wave

import pytest
from pngs import is_png, picture_rows

from avdistill.cli import main
from avdistill.evaluation import EvalConfig
from avdistill.grid.bench import protocol_tag


def bench_args(data, out, *extra):
    return ["bench", "--data", data, "--methods", "random,dm", "--ipc", "1,2", "--sets", "2", "--runs", "2",
            "--set", "dm.iterations=2", "--set", "dm.real_per_class=4", "--epochs", "2", "--batch-size", "8",
            "--griffin-lim-iters", "2", "--no-video", "--out", str(out), "--quiet", *extra]


def test_bench_grid_report_and_cache(tiny_dataset_file, tmp_path, capsys, monkeypatch):
    data, out = tiny_dataset_file.source_path, tmp_path / "bench"
    assert main(bench_args(data, out)) == 0
    report = capsys.readouterr().out
    assert "## Main table" in report and "IPC 2 AV (ensemble)" in report and "whole data" in report
    assert "(n=4)" in report  # 2 sets x 2 runs pooled, with the count printed
    # Only the sections that were asked for: one head, no ablations, no retrieval.
    assert "## Fusion study" not in report and "## Ablation" not in report and "retrieval" not in report
    # Times: DM IPC 2 reuses the real means DM IPC 1 filled (same seed per set) and states their cost alike.
    times = report.split("## Distillation time")[1].splitlines()
    cols = {line.split("|")[1].strip(): [x.strip() for x in line.split("|")[2:-1]] for line in times
            if line.startswith("| ")}
    assert cols["set"] == ["wall (s)", "without caches (s)", "real means (s)", "cold (s)", "reused from the cache",
                           "peak memory (MiB)"]
    assert float(cols["dm IPC 2"][5].split()[0]) > 50  # each set's own peak resident memory, in MiB
    assert cols["dm IPC 1"][4] == "–" and cols["dm IPC 2"][4] == "real means"
    assert cols["dm IPC 1"][2] == cols["dm IPC 2"][2] != "–" and cols["random IPC 1"][2] == "–"
    assert "Code: commit " in report
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert len(cells) == 2 * 2 * 2 + 1  # methods x ipc x sets, + whole data
    assert (out / "sets" / "dm-ipc2-set1" / "synthetic.safetensors").exists()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 * 2 + 1 and {r["method"] for r in rows} == {"random", "dm", "whole data"}
    # Each table cell pools sets x runs = 4 numbers.
    summary = json.loads((out / "results.json").read_text())
    dm2 = [c for c in summary["cells"] if c["settings"].get("method") == "dm" and c["settings"].get("ipc") == 2]
    assert sum(len(c["accuracies"]) for c in dm2) == 4
    # An ensemble-only grid still has A and V columns: the ensemble's branches, recorded per run in each cell.
    assert "| IPC 2 A " in report and "| IPC 2 V " in report and "the ensemble's audio branch alone" in report
    branch_a = [100 * a for c in dm2 for a in c["branch_accuracies"]["a"]]
    dm_row = next(line for line in report.splitlines() if line.startswith("| dm (synthesis)"))
    header = next(line for line in report.splitlines() if line.startswith("| method"))
    column = [h.strip() for h in header.split("|")].index("IPC 2 A")
    assert dm_row.split("|")[column].strip().startswith(f"{sum(branch_a) / len(branch_a):.2f}")
    # Pictures of the synthesis method (dm, not the random coreset) at the largest IPC, linked relatively.
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert sorted(links) == sorted(f"pictures/dm-ipc2/{n}.png" for n in ("frames", "spectrograms", "losses",
                                                                            "embeddings"))
    for link in links:
        assert is_png(out / link)
    assert picture_rows(out / "pictures/dm-ipc2/frames.png") == 4  # one row per class
    assert picture_rows(out / "pictures/dm-ipc2/spectrograms.png") == 4
    wavs = sorted((out / "pictures/dm-ipc2/audio").glob("*.wav"))
    assert [w.name for w in wavs] == ["00-c0-00.wav", "01-c1-00.wav", "02-c2-00.wav", "03-c3-00.wav"]
    with wave.open(str(wavs[0])) as f:
        assert f.getnframes() == tiny_dataset_file.preprocessing.mel.clip_samples
    # The "before" pictures show the method's own initialisation, saved beside the set.
    assert (out / "sets" / "dm-ipc2-set0" / "initial.safetensors").exists()
    assert "Before = the method's initialisation (init=real" in (out / "report.md").read_text()
    # A rerun evaluates and distils nothing.
    import avdistill.grid.runner as runner

    def refuse(*a, **k):
        raise AssertionError("recomputed a cached cell")

    monkeypatch.setattr(runner, "evaluate", refuse)
    monkeypatch.setattr(runner, "distill", refuse)
    monkeypatch.setattr(runner, "evaluate_whole_data", refuse)
    assert main(bench_args(data, out)) == 0
    # Changed evaluation settings are new cells.
    with pytest.raises(AssertionError, match="recomputed"):
        main(bench_args(data, out, "--runs", "3"))


def test_bench_fusion_ablations_and_retrieval(tiny_dataset_file, tmp_path, capsys):
    from avdistill.methods.avdd import ABLATIONS

    out, report_dir = tmp_path / "cache", tmp_path / "report"
    args = ["bench", "--data", tiny_dataset_file.source_path, "--methods", "random", "--ipc", "1",
            "--heads", "a,v,ensemble", "--sets", "1", "--runs", "1", "--ablations", "avdd", "--retrieval", "--epochs", "1",
            "--batch-size", "8", "--set", "avdd.iterations=1", "--set", "avdd.real_per_class=2",
            "--set", "avdd.herding_epochs=1", "--out", str(out), "--report", str(report_dir), "--quiet"]
    assert main(args) == 0
    report = (report_dir / "report.md").read_text()
    assert capsys.readouterr().out.strip() == report.strip()
    for section in ("## Main table", "## Fusion study", "## Ablation: avdd", "## Cross-modal retrieval"):
        assert section in report
    assert "| IPC 1 A " in report and "| IPC 1 V " in report
    for head in ("random / audio-only", "random / visual-only", "random / ensemble", "whole data / ensemble"):
        assert head in report
    for row in ABLATIONS:
        assert re.search(rf"\| {re.escape(row)} +\| \d+\.\d\d \(n=1\) +\|", report), row  # one run: no ±
    assert re.search(r"\| random IPC 1 +\| \d+\.\d\d +\|", report) and "| whole data " in report
    assert not re.search(r"± \d", report.split("## Distillation time")[0])
    # Ablation rows are evaluated with the AV head only; the AVDD-defaults row is one cell like any other.
    cells = {p.name for p in (out / "cells").iterdir()}
    tag = protocol_tag(EvalConfig(epochs=1, batch_size=8))  # the protocol of the args above
    assert f"avdd-ipc1-set0-ensemble{tag}.json" in cells and f"avdd-ipc1-set0-a{tag}.json" not in cells
    assert sum(name.startswith("avdd") for name in cells) == len(ABLATIONS)
    assert not (out / "report.md").exists()  # the report went to --report, the cache stayed in --out
    rows = list(csv.DictReader((report_dir / "results.csv").open()))
    assert {r["metric"] for r in rows} >= {"top1", "a2v R@1", "v2a median_rank"}


@pytest.mark.parametrize("extra, words", [
    (["--set", "dm.nope=1"], "cannot set"),
    (["--set", "mtt.iterations=1"], "METHOD one of"),
    (["--heads", "telepathy"], "unknown head"),
    (["--ipc", "one"], "comma-separated integers"),
    (["--ablations", "dm"], "declares no ablation rows"),
    (["--picture-ipc", "5"], "not one of the grid's IPCs"),
])
def test_bench_bad_options(tiny_dataset_file, tmp_path, capsys, extra, words):
    assert main(bench_args(tiny_dataset_file.source_path, tmp_path / "b", *extra)) == 2
    assert words in capsys.readouterr().err


def test_benches_under_two_protocols_share_the_sets_and_keep_both_cells(tiny_dataset_file, tmp_path, capsys):
    """A fixed-steps bench in the folder of an AVDD-protocol bench reuses its sets and adds its own cells, so a
    rerun of the first finds every cell it made (nothing is replaced, nothing recomputed)."""
    data, out = tiny_dataset_file.source_path, tmp_path / "bench"
    args = ["bench", "--data", data, "--methods", "random,dm", "--ipc", "1", "--sets", "1", "--runs", "1",
            "--whole-data-runs", "0", "--set", "dm.iterations=2", "--set", "dm.real_per_class=4", "--no-pictures",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = {p.name: p.read_text() for p in (out / "cells").iterdir()}
    synthetic = (out / "sets" / "dm-ipc1-set0" / "synthetic.safetensors").stat().st_mtime_ns
    assert main([*args, "--steps", "3"]) == 0
    cells = {p.name: p.read_text() for p in (out / "cells").iterdir()}
    assert len(cells) == 2 * len(first) and all(cells[name] == text for name, text in first.items())
    assert (out / "sets" / "dm-ipc1-set0" / "synthetic.safetensors").stat().st_mtime_ns == synthetic
    assert main(args) == 0
    assert {p.name: p.read_text() for p in (out / "cells").iterdir()} == cells
    capsys.readouterr()
