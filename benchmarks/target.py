"""Issue 20's comparison and target, from ``avdistill bench`` reports' results.json.

Writes two sections of a Markdown file (default docs/AVMMD.md), nothing typed by hand:

- ``comparison``: every method at every IPC: the AV (ensemble) accuracy, its audio and visual
  branches alone (A, V: the audio-only and visual-only heads' runs, see EnsembleHead), cross-modal
  retrieval R@1 in both directions when the bench ran ``--retrieval``, and each set's cold
  distillation seconds and peak memory;
- ``target``: the criteria of the issue for the new method (``--method``): at every IPC a lead of at
  least 2 points over the best of AVDD and DAVDD with the gap above both standard deviations; above
  herding and DM at the smallest IPC, the gap above both stds; cold seconds and peak memory per set
  at most 1.5 x AVDD's (mean over the sets, measured in the same run; with ``--cost``, from
  benchmarks/cost.py's sets, each distilled cold in a process of its own).

Several reports: a later one replaces every cell of the IPCs it measured (and whole data), so each
IPC's rows still come from one run; the section names the commit and command of each.

    python benchmarks/target.py docs/report-dev/results.json --commit SHA
    python benchmarks/target.py docs/report-dev/results.json docs/report-dev-20/results.json --commit SHA1 SHA2 \
        --cost runs/cost
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import write_section  # noqa: E402
from headline import WHOLE, cold_seconds, combine, fmt, markdown, peak_mib, per_set, pooled  # noqa: E402
import cost  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "AVMMD.md"
RIVALS = ("avdd", "davdd")  # the papers' audio-visual methods the new one must beat at every IPC
SMALL_IPC_RIVALS = ("herding", "dm")  # and these at the smallest IPC
MIN_LEAD = 2.0  # points
MAX_RATIO = 1.5  # wall time and memory against AVDD's


def retrieval_pool(results: dict, direction: str) -> dict[tuple[str, int | None], list[float]]:
    """(method, ipc) -> every retrieval run's R@1 (%) in `direction` ("a2v" or "v2a")."""
    out: dict[tuple[str, int | None], list[float]] = {}
    for cell in results["cells"]:
        if cell["table"] == "main" and "retrieval" in cell:
            key = (cell["settings"]["method"], cell["settings"].get("ipc"))
            out.setdefault(key, []).extend(100 * run[direction]["R@1"] for run in cell["retrieval"])
    return out


def comparison(results: dict, sources: list[str]) -> str:
    grid = results["grid"]
    columns = {"AV %": pooled(results, "ensemble"), "A %": pooled(results, "ensemble", "a"),
               "V %": pooled(results, "ensemble", "v"),
               "R@1 A→V %": retrieval_pool(results, "a2v"), "R@1 V→A %": retrieval_pool(results, "v2a")}
    columns = {name: values for name, values in columns.items() if values}
    seconds, memory = per_set(results, "ensemble", cold_seconds), per_set(results, "ensemble", peak_mib)
    header = ["method", "IPC", *columns, "cold s/set", "peak MiB"]
    rows = [[m, str(k), *(fmt(v.get((m, k))) for v in columns.values()), fmt(seconds.get((m, k)), 0),
             fmt(memory.get((m, k)), 0)] for k in grid["ipcs"] for m in grid["methods"]]
    rows.append([WHOLE, "all", *(fmt(v.get((WHOLE, None))) for v in columns.values()), "–", "–"])
    runs = f"{grid['sets']} synthetic sets × {grid['runs']} evaluation runs per cell"
    return "\n".join([
        f"Dataset `{grid['data']}`, test split, AVDD protocol, {runs} ({grid['whole_data_runs']} runs for whole "
        "data); mean ± std (n). AV: the ensemble head; A and V: its audio and visual branch alone (each trains "
        "exactly as the audio-only / visual-only head does); R@1: class-level cross-modal retrieval after "
        "contrastive training on the set (docs/EVALUATION.md); cold s/set: wall seconds to distil one set, caches it "
        "reused counted at their recorded cost; peak MiB: the process's peak resident memory while it did (a set "
        "that follows a larger one in the same process starts from that process's size: benchmarks/cost.py "
        "measures sets in processes of their own). The rows come from:", "",
        *(f"- {line}" for line in sources), "", *markdown(header, rows)])


def beats(mine: list[float], theirs: list[float], lead: float = 0.0) -> tuple[float, bool]:
    """(gap in points, whether it is at least `lead` and above both standard deviations)."""
    gap = statistics.fmean(mine) - statistics.fmean(theirs)
    return gap, gap >= lead and gap > max(statistics.pstdev(mine), statistics.pstdev(theirs))


def target(results: dict, method: str, cost_cells: list[dict] | None = None) -> str:
    """The verdicts; time and memory from the bench's cells, or with `cost_cells` from benchmarks/cost.py's."""
    ipcs = results["grid"]["ipcs"]
    acc = pooled(results, "ensemble")
    seconds, memory = per_set(results, "ensemble", cold_seconds), per_set(results, "ensemble", peak_mib)
    measured = "in the bench"
    if cost_cells is not None:
        seconds, memory, measured = {}, {}, "cold, a process per set"
        for c in cost_cells:
            key = (c["settings"]["method"], c["settings"]["ipc"])
            seconds.setdefault(key, []).append(c["wall_seconds"])
            memory.setdefault(key, []).append(c["rss_mib"])
    rows = []

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**yes**" if ok else "no")

    for k in ipcs:
        mine = acc.get((method, k))
        rivals = [m for m in RIVALS if acc.get((m, k))]
        if not mine or not rivals:
            rows.append([f"≥ {MIN_LEAD:g} points over the best of AVDD and DAVDD, above both stds", str(k),
                         "not measured", "–"])
            continue
        best = max(rivals, key=lambda m: statistics.fmean(acc[(m, k)]))
        gap, ok = beats(mine, acc[(best, k)], MIN_LEAD)
        rows.append([f"≥ {MIN_LEAD:g} points over the best of AVDD and DAVDD, above both stds", str(k),
                     f"{fmt(mine)} vs {best} {fmt(acc[(best, k)])}: {gap:+.1f}", verdict(ok)])
    small = min(ipcs)
    for rival in SMALL_IPC_RIVALS:
        mine, theirs = acc.get((method, small)), acc.get((rival, small))
        if mine and theirs:
            gap, ok = beats(mine, theirs)
            rows.append([f"above {rival}, gap above both stds", str(small), f"{fmt(mine)} vs {fmt(theirs)}: {gap:+.1f}",
                         verdict(ok)])
    for name, values, unit in (("cold wall time per set", seconds, "s"), ("peak memory per set", memory, "MiB")):
        for k in ipcs:
            mine, avdd = values.get((method, k)), values.get(("avdd", k))
            if mine and avdd:
                ratio = statistics.fmean(mine) / statistics.fmean(avdd)
                rows.append([f"{name} ≤ {MAX_RATIO:g} × AVDD's ({measured})", str(k),
                             f"{statistics.fmean(mine):.0f} vs {statistics.fmean(avdd):.0f} {unit}: {ratio:.2f} ×",
                             verdict(ratio <= MAX_RATIO)])
    return "\n".join(markdown(["criterion", "IPC", f"{method} vs rival (AV %, n = sets × runs)", "met?"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="results.json of bench reports; a later one replaces the IPCs it measured")
    parser.add_argument("--commit", required=True, nargs="+", help="the commit each bench ran on, in the same order")
    parser.add_argument("--method", default="avmmd", help="the new method")
    parser.add_argument("--cost", type=Path, help="benchmarks/cost.py's output folder: time and memory verdicts from it")
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="file whose 'comparison' and 'target' sections are written")
    args = parser.parse_args()
    if len(args.commit) != len(args.results):
        parser.error(f"{len(args.results)} results file(s) need as many commits, got {len(args.commit)}")
    results, sources = combine([json.loads(path.read_text()) for path in args.results], args.commit)
    shown = " ".join(["python benchmarks/target.py", *(f"<report {i + 1}>/results.json" for i in range(len(args.results))),
                      "--commit", *args.commit, *(["--cost", "runs/cost"] if args.cost else [])])
    write_section(args.doc, "comparison", comparison(results, [*sources, f"this table: `{shown}`"]))
    write_section(args.doc, "target", target(results, args.method, cost.load(args.cost) if args.cost else None))
    print((args.doc).read_text())


if __name__ == "__main__":
    main()
