"""README.md's headline table: the AV (ensemble) accuracy of every method at every IPC on the
development benchmark, from one ``avdistill bench`` report's results.json, with each set's
distillation time and peak memory, and which methods are within noise of each column's best.

Nothing in the section is typed by hand: rerun this after the bench to regenerate it.

    python benchmarks/headline.py docs/report-hard/results.json --commit SHA

Several reports (e.g. one IPC measured again at a later commit): a later report replaces every cell of
the IPCs it measured, and of whole data, so each IPC's rows still come from one run (:func:`combine`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import write_section  # noqa: E402

from avdistill.spread import mean_std  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
WHOLE = "whole data"


def pooled(results: dict, head: str, branch: str = "") -> dict[tuple[str, int | None], list[float]]:
    """(method, ipc) -> the accuracies of every set and run of the main table's `head` cells, in %; with
    `branch` ("a" or "v"), those of that branch of the head alone (the ensemble's, see EnsembleHead)."""
    out: dict[tuple[str, int | None], list[float]] = {}
    for cell in results["cells"]:
        s = cell["settings"]
        accuracies = cell.get("branch_accuracies", {}).get(branch) if branch else cell.get("accuracies")
        if cell["table"] == "main" and s.get("head") == head and accuracies is not None:
            out.setdefault((s["method"], s.get("ipc")), []).extend(100 * a for a in accuracies)
    return out


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def cold_seconds(cell: dict) -> float | None:
    """The set's cold distillation seconds: its wall time plus the recorded cost of the cache entries it reused,
    so no figure depends on which set ran first."""
    if cell.get("distill_seconds") is None:
        return None
    return cell["distill_seconds"] + sum((cell.get("cache_seconds") or {}).get("reused", {}).values())


def peak_mib(cell: dict) -> float | None:
    return (cell.get("peak_memory_mib") or {}).get("rss_mib")


def per_set(results: dict, head: str, value) -> dict[tuple[str, int], list[float]]:
    """(method, ipc) -> `value(cell)` of each synthetic set's `head` cell (sets without a value left out)."""
    out: dict[tuple[str, int], dict[int, float]] = {}
    for cell in results["cells"]:
        s = cell["settings"]
        if cell["table"] == "main" and s.get("head") == head and s.get("ipc") is not None:
            if (v := value(cell)) is not None:
                out.setdefault((s["method"], s["ipc"]), {})[s["set"]] = v
    return {key: list(sets.values()) for key, sets in out.items()}


def fmt(xs: list[float] | None, digits: int = 1) -> str:
    return mean_std(xs, 1, digits) if xs else "–"


def within_noise_of_best(acc: dict, methods: list[str], ipc: int) -> tuple[str, list[str]]:
    """The method with the best mean at `ipc`, and the others whose gap to it does not exceed both stds."""
    scored = [m for m in methods if acc.get((m, ipc))]
    best = max(scored, key=lambda m: statistics.fmean(acc[(m, ipc)]))
    b = acc[(best, ipc)]
    ties = [m for m in scored if m != best and statistics.fmean(b) - statistics.fmean(acc[(m, ipc)])
            <= max(statistics.pstdev(b), statistics.pstdev(acc[(m, ipc)]))]
    return best, ties


def combine(reports: list[dict], commits: list[str]) -> tuple[dict, list[str]]:
    """One results dict whose cells at each IPC, and of whole data, come from the last report that measured them;
    and a line per report saying which rows it gave, with its commit and command."""
    source: dict[int | None, int] = {}
    for i, report in enumerate(reports):
        for cell in report["cells"]:
            source[cell["settings"].get("ipc")] = i
    cells = [cell for i, report in enumerate(reports) for cell in report["cells"]
             if source[cell["settings"].get("ipc")] == i]
    grid = {**reports[0]["grid"], "ipcs": sorted(k for k in source if k is not None)}
    lines = []
    for i, (report, commit) in enumerate(zip(reports, commits)):
        mine = sorted(k for k, j in source.items() if j == i and k is not None)
        what = ", ".join(f"IPC {k}" for k in mine) + (" and whole data" if source.get(None) == i else "")
        if what:
            lines.append(f"{what}: commit {commit}, `{report['command']}`")
    return {**reports[0], "grid": grid, "cells": cells}, lines


def section(results: dict, sources: list[str], head: str = "ensemble") -> str:
    grid = results["grid"]
    methods, ipcs = grid["methods"], grid["ipcs"]
    acc = pooled(results, head)
    seconds, memory = per_set(results, head, cold_seconds), per_set(results, head, peak_mib)
    header = ["method", *(f"IPC {k} AV %" for k in ipcs), *(f"IPC {k} s/set" for k in ipcs),
              *(f"IPC {k} peak MiB" for k in ipcs)]
    rows = [[m, *(fmt(acc.get((m, k))) for k in ipcs), *(fmt(seconds.get((m, k)), 0) for k in ipcs),
             *(fmt(memory.get((m, k)), 0) for k in ipcs)] for m in methods]
    whole = acc.get((WHOLE, None))
    rows.append([WHOLE, *([fmt(whole)] * len(ipcs)), *(["–"] * 2 * len(ipcs))])
    table = markdown(header, rows)
    readings = []
    for k in ipcs:
        best, ties = within_noise_of_best(acc, methods, k)
        tied = f"; within noise of it (gap not above both stds): {', '.join(ties)}" if ties else \
            "; it beats every other method by more than both stds"
        readings.append(f"- IPC {k}: best mean {best}{tied}.")
    runs = f"{grid['sets']} synthetic sets × {grid['runs']} evaluation runs per cell"
    return "\n".join([
        f"Dataset `{grid['data']}`, test split, {head} head, AVDD protocol; accuracy % as mean ± std (n) over "
        f"{runs} ({grid['whole_data_runs']} runs for whole data); s/set: cold wall seconds to distil one set "
        "(caches it reused counted at their recorded cost), "
        "peak MiB: the process's peak resident memory while it did (each set ran on one core of the 2-core "
        "development machine, beside the other bench processes). The rows come from:", "",
        *(f"- {line}" for line in sources), "", *table, "", *readings])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="results.json of bench reports; a later one replaces the IPCs it measured")
    parser.add_argument("--commit", required=True, nargs="+", help="the commit each bench ran on, in the same order")
    parser.add_argument("--head", default="ensemble")
    parser.add_argument("--doc", type=Path, default=README, help="file whose 'headline' section is written")
    args = parser.parse_args()
    if len(args.commit) != len(args.results):
        parser.error(f"{len(args.results)} results file(s) need as many commits, got {len(args.commit)}")
    results, sources = combine([json.loads(path.read_text()) for path in args.results], args.commit)
    shown = " ".join(["python benchmarks/headline.py",
                      *(f"<report {i + 1}>/results.json" for i in range(len(args.results))), "--commit", *args.commit])
    text = section(results, [*sources, f"this table: `{shown}`"], args.head)
    write_section(args.doc, "headline", text)
    print(text)


if __name__ == "__main__":
    main()
