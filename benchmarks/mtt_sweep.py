"""docs/MTT.md "Learning-rate sweep": MTT on --data (default av-digits-hard) at IPC 1, seed 0, 30 iterations, whole synthetic set
per student step (``--batch-syn 0``), over the synthetic-tensor lr and lr_lr; each set evaluated with 2 runs.

The choice is made on the validation split (``--on val``, the default); ``--on test`` reports a chosen
setting and must not choose one. Every set and its evaluation JSON go under ``--out`` (a rerun reuses
finished sets), and the table is printed at the end.

    OMP_NUM_THREADS=1 python benchmarks/mtt_sweep.py --data av-digits-hard --out runs/mtt-sweep
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from avdistill.spread import mean_std

GRID = [(300, 1e-5), (1000, 1e-5), (1000, 1e-4), (10000, 1e-5), (10000, 1e-4)]  # (lr_audio = lr_frames, lr_lr)


def avdistill(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "avdistill", *args], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/mtt-sweep")
    p.add_argument("--data", default="av-digits-hard", help="dataset (as for avdistill distill --data)")
    p.add_argument("--on", choices=("val", "test"), default="val", help="split the sets are scored on")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for lr, lr_lr in [("random", None), *GRID]:
        name = "random" if lr_lr is None else f"lr{lr}-lrlr{lr_lr:g}"
        folder = out / name
        if not (folder / "synthetic.safetensors").exists():
            method = ["--method", "random"] if lr_lr is None else [
                "--method", "mtt", "--iterations", str(args.iterations), "--batch-syn", "0", "--lr-audio", str(lr),
                "--lr-frames", str(lr), "--lr-lr", str(lr_lr)]
            avdistill("distill", *method, "--data", args.data, "--ipc", str(args.ipc), "--seed", "0", "--quiet", "--out", str(folder))
        result = folder / f"evaluate-{args.on}.json"
        if not result.exists():
            avdistill("evaluate", str(folder / "synthetic.safetensors"), "--data", args.data, "--runs", str(args.runs), "--on", args.on,
                      "--quiet", "--json", str(result))
        accuracies = [a for record in json.loads(result.read_text())["results"] for a in record["accuracies"]]
        rows.append((name, mean_std(accuracies)))
    print(f"MTT sweep, {args.data} IPC {args.ipc}, {args.iterations} iterations, accuracy % on {args.on}:")
    print("\n".join(f"- {name}: {accuracy}" for name, accuracy in rows))


if __name__ == "__main__":
    main()
