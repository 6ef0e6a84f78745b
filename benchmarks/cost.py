"""What a set costs: wall seconds and peak memory of AV-MMD against AVDD, each set distilled in a fresh process.

Inside a long ``bench`` process a set's peak resident memory starts from the size the process already had (glibc
keeps what earlier, larger sets freed), so its memory column mixes the set's own cost with the order the sets ran
in. Here every set is one ``avdistill distill`` process with an empty cache folder, so it is cold (herding
features, everything, computed) and its peak is its own. The process inherits this script's CPU pinning and
thread count. Within each (IPC, set) the methods alternate in order, so slow drift of the machine falls on both.

Each cell is the wall seconds and peak resident MiB the run recorded in its synthetic.json, with the code digest it
ran under: a cell of other code is measured again, never reported (``--report`` refuses it).

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/cost.py --ipc 1,10,20 --sets 3 --out runs/cost
    python benchmarks/cost.py --report --out runs/cost --doc docs/AVMMD.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import write_section  # noqa: E402
from headline import fmt, markdown  # noqa: E402

from avdistill.cache import code_digest  # noqa: E402
from avdistill.config import parse_ints, split_names  # noqa: E402
from avdistill.files import source_commit, versions, write_json  # noqa: E402

MAX_RATIO = 1.5  # issue 20: the new method's time and memory per set against AVDD's


def cell_path(out: Path, method: str, ipc: int, s: int) -> Path:
    return out / "cells" / f"{method}-ipc{ipc}-set{s}.json"


def measure(args, method: str, ipc: int, s: int) -> dict:
    """Distil one set in a fresh process with an empty cache; the cell (reused if this code measured it)."""
    path = cell_path(Path(args.out), method, ipc, s)
    settings = {"data": args.data, "method": method, "ipc": ipc, "seed": s, "budget": args.budget}
    code = code_digest(".")
    if path.exists():
        cell = json.loads(path.read_text())
        if cell["settings"] == settings and cell["code_sha256"] == code:
            return cell
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        command = [sys.executable, "-m", "avdistill", "distill", "--data", args.data, "--method", method,
                   "--ipc", str(ipc), "--seed", str(s), "--budget", args.budget, "--out", str(Path(tmp) / "set"),
                   "--quiet"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
        meta = json.loads((Path(tmp) / "set" / "synthetic.json").read_text())["meta"]
    cell = {"settings": settings, "wall_seconds": meta["wall_seconds"], "rss_mib": meta["peak_memory_mib"]["rss_mib"],
            "memory_scope": meta["peak_memory_mib"]["scope"], "code_sha256": meta["code_sha256"],
            "commit": source_commit(), "versions": versions()}
    write_json(path, cell)
    print(f"{method} ipc {ipc} set {s}: {cell['wall_seconds']:.0f} s, {cell['rss_mib']:.0f} MiB", flush=True)
    return cell


def load(out: str | Path) -> list[dict]:
    """Every measured cell under `out`; all of them must come from the code checked out now."""
    cells = [json.loads(p.read_text()) for p in sorted((Path(out) / "cells").glob("*.json"))]
    code = code_digest(".")
    stale = [c for c in cells if c["code_sha256"] != code]
    if stale:
        raise SystemExit(f"{len(stale)} cell(s) under {out} were measured with other code (commit "
                         f"{stale[0]['commit']}); measure them again")
    return cells


def ratios(cells: list[dict], method: str, baseline: str) -> list[dict]:
    """Per IPC: each method's seconds and MiB per set, and `method`'s ratio of means to `baseline`'s."""
    rows = []
    for ipc in sorted({c["settings"]["ipc"] for c in cells}):
        of = {m: [c for c in cells if c["settings"]["ipc"] == ipc and c["settings"]["method"] == m]
              for m in (baseline, method)}
        if not all(of.values()):
            continue
        row = {"ipc": ipc}
        for key in ("wall_seconds", "rss_mib"):
            values = {m: [c[key] for c in of[m]] for m in of}
            row[key] = values
            row[f"{key}_ratio"] = statistics.fmean(values[method]) / statistics.fmean(values[baseline])
        rows.append(row)
    return rows


def report(args) -> str:
    cells = load(args.out)
    header = ["IPC", f"{args.baseline} s/set", f"{args.method} s/set", "time ratio", f"{args.baseline} peak MiB",
              f"{args.method} peak MiB", "memory ratio"]
    rows = [[str(r["ipc"]), fmt(r["wall_seconds"][args.baseline], 0), fmt(r["wall_seconds"][args.method], 0),
             f"{r['wall_seconds_ratio']:.2f} ×", fmt(r["rss_mib"][args.baseline], 0), fmt(r["rss_mib"][args.method], 0),
             f"{r['rss_mib_ratio']:.2f} ×"] for r in ratios(cells, args.method, args.baseline)]
    commits = ", ".join(sorted({c["commit"] for c in cells}))
    budget = cells[0]["settings"]["budget"]
    return "\n".join([
        f"Dataset `{cells[0]['settings']['data']}`, budget `{budget}`, each set distilled cold in a fresh process "
        "(empty cache folder), one thread pinned to one core; mean ± std (n = sets); ratios of the means. "
        f"Commit {commits}; commands:", "", "```bash",
        f"OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/cost.py --data {cells[0]['settings']['data']} "
        f"--methods {args.baseline},{args.method} --ipc {','.join(str(r[0]) for r in rows)} "
        f"--sets {max(c['settings']['seed'] for c in cells) + 1} --budget {budget} --out runs/cost",
        "python benchmarks/cost.py --report --out runs/cost --doc docs/AVMMD.md", "```", "",
        *markdown(header, rows)])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="av-digits-hard")
    p.add_argument("--methods", default="avdd,avmmd", help="the baseline, then the method measured against it")
    p.add_argument("--ipc", default="1,10,20")
    p.add_argument("--sets", type=int, default=3)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--out", default="runs/cost")
    p.add_argument("--report", action="store_true", help="print the table of the measured cells")
    p.add_argument("--doc", help="with --report: also write it into this Markdown file's 'cost' section")
    args = p.parse_args(argv)
    args.baseline, args.method = split_names(args.methods)
    if args.report:
        text = report(args)
        print(text)
        if args.doc:
            write_section(args.doc, "cost", text)
        return
    for ipc in parse_ints(args.ipc, "--ipc"):
        for s in range(args.sets):
            order = (args.baseline, args.method) if s % 2 == 0 else (args.method, args.baseline)
            for method in order:
                measure(args, method, ipc, s)


if __name__ == "__main__":
    sys.exit(main())
