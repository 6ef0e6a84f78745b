"""docs/EVALUATION.md's "Protocols" section: the same sets under the AVDD protocol (fixed epochs)
and the fixed-steps protocol, and how much of AVDD's gain over random is packing, steps, herding
and matching.

Reads the results.json of two ``avdistill bench`` reports made with the same grid, one with the
default protocol and one with ``--steps N``, and writes the section between
``<!-- protocols:begin -->`` and ``<!-- protocols:end -->``. Decomposition at each IPC (AV head),
exact by telescoping, every term a difference of two measured rows:

- packing = (random + factor) − random, both under the fixed-steps protocol (same steps);
- more steps = [(random + factor) − random] under the AVDD protocol − packing;
- herding = (herding + factor) − (random + factor), AVDD protocol;
- matching = AVDD − (herding + factor), AVDD protocol (AVDD starts from herding + factor).

    python benchmarks/protocols.py runs/hard-epochs/results.json runs/hard-steps/results.json --commit SHA

Rows a bench did not run print as "–".
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

DOC = Path(__file__).resolve().parents[1] / "docs/EVALUATION.md"
ROWS = ("random", "random + factor", "herding", "herding + factor", "dm", "avdd", "davdd", "mtt", "avmmd")


def accuracies(results: dict, head: str) -> dict[tuple[str, int], list[float]]:
    """(row label, ipc) -> pooled accuracies of the cells of `head` (rows shared by tables counted once)."""
    pooled: dict[tuple[str, int], dict[int, list[float]]] = {}
    for cell in results["cells"]:
        s = cell["settings"]
        if s.get("head") == head and cell["row"] in ROWS:
            pooled.setdefault((cell["row"], s["ipc"]), {})[s["set"]] = cell["accuracies"]
    return {key: [a for run in sets.values() for a in run] for key, sets in pooled.items()}


def fmt(xs: list[float] | None) -> str:
    return mean_std(xs, 100, 1) if xs else "–"


def mean(xs: list[float]) -> float:
    return 100 * statistics.fmean(xs)


def noise(*groups: list[float]) -> float:
    """The larger of the groups' standard deviations (points): a gap under it is within noise."""
    return max(100 * statistics.pstdev(g) if len(g) > 1 else 0.0 for g in groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("epochs", type=Path, help="results.json of the AVDD-protocol bench")
    parser.add_argument("steps", type=Path, help="results.json of the same bench with --steps N")
    parser.add_argument("--head", default="ensemble")
    parser.add_argument("--commit", required=True, help="the commit both benches ran on")
    args = parser.parse_args()
    e_run, s_run = json.loads(args.epochs.read_text()), json.loads(args.steps.read_text())
    steps = s_run["grid"]["eval_config"]["steps"]
    e, s = accuracies(e_run, args.head), accuracies(s_run, args.head)
    ipcs = sorted({ipc for _, ipc in e})
    header = "| row | " + " | ".join(f"IPC {k} AVDD protocol | IPC {k} {steps} steps" for k in ipcs) + " |"
    lines = [header, "|---|" + "---|---|" * len(ipcs)]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(f"{fmt(e.get((row, k)))} | {fmt(s.get((row, k)))}" for k in ipcs) + " |")
    terms = ["", "| IPC | AVDD − random | packing | more steps | herding | matching |", "|---|---|---|---|---|---|"]
    for k in ipcs:
        r_e, rf_e, hf_e, a_e = (e[(row, k)] for row in ("random", "random + factor", "herding + factor", "avdd"))
        r_s, rf_s = s[("random", k)], s[("random + factor", k)]
        packing = mean(rf_s) - mean(r_s)
        parts = {"total": (mean(a_e) - mean(r_e), noise(a_e, r_e)), "packing": (packing, noise(rf_s, r_s)),
                 "steps": (mean(rf_e) - mean(r_e) - packing, noise(rf_e, r_e, rf_s, r_s)),
                 "herding": (mean(hf_e) - mean(rf_e), noise(hf_e, rf_e)),
                 "matching": (mean(a_e) - mean(hf_e), noise(a_e, hf_e))}
        terms.append(f"| {k} | " + " | ".join(f"{v:+.1f}" + (" (within noise)" if abs(v) <= n else "")
                                              for v, n in parts.values()) + " |")
    grid = e_run["grid"]
    text = (f"Dataset `{grid['data']}`, {args.head} head, test split, accuracy % as mean ± std (n) over "
            f"{grid['sets']} set(s) × {grid['runs']} run(s); commit {args.commit}. Commands:\n\n```bash\n"
            f"{e_run['command']}\n{s_run['command']}\npython benchmarks/protocols.py {args.epochs} {args.steps} "
            f"--commit {args.commit}\n```\n\n" + "\n".join(lines) + "\n" + "\n".join(terms) +
            "\n\nA term is marked within noise when its size does not exceed the larger standard deviation of the "
            "rows it is the difference of (for 'more steps', of all four rows).")
    write_section(DOC, "protocols", text)
    print(text)


if __name__ == "__main__":
    main()
