"""Peak memory and speed of MTT's unrolled student on AV-Digits: one subprocess per setting.

Each setting distils a few iterations in a fresh process (experts come from the cache, trained
first if missing) and reports its peak RSS (resource.getrusage ru_maxrss) and seconds per
iteration (the mean over the iterations after the first). Prints a Markdown table for docs/MTT.md.

    OMP_NUM_THREADS=1 python benchmarks/mtt_memory.py --expert-dir runs/bench-methods/mtt-experts
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from tabulate import tabulate

SETTINGS = [  # (label, ipc, options)
    ("IPC 1, default (N=10, batch all 10)", 1, {}),
    ("IPC 10, default (N=10, batch 32)", 10, {}),
    ("IPC 10, lower memory (N=10, batch 16)", 10, {"batch_syn": 16}),
    ("IPC 10, lower memory (N=5, batch 32)", 10, {"syn_steps": 5}),
    ("IPC 10, whole set per step (N=10, batch 100)", 10, {"batch_syn": 0}),
]

CHILD = """
import json, resource, sys, time, torch
import avdistill
from avdistill.methods.mtt import TrajectoryMatcher
torch.set_num_threads(1)
ipc, options, out = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
data = avdistill.load_dataset("av-digits")
stamps = []  # start of every iteration's loss: consecutive differences = loss + backward + step
matching = TrajectoryMatcher.__call__
def timed(self, *args):
    stamps.append(time.perf_counter())
    return matching(self, *args)
TrajectoryMatcher.__call__ = timed
avdistill.distill(data, "mtt", ipc=ipc, seed=0, out=out, progress=False, **options)
stamps.append(time.perf_counter())  # the end of the last iteration (plus writing the output)
steps = [b - a for a, b in zip(stamps[1:], stamps[2:])]
print(json.dumps({"peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "s_per_iteration": round(sum(steps) / len(steps), 2)}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expert-dir", required=True, help="the expert cache (the benchmark's: <out>/mtt-experts)")
    p.add_argument("--iterations", type=int, default=4, help="iterations per setting (the first is not timed)")
    args = p.parse_args()
    rows = []
    for label, ipc, options in SETTINGS:
        with tempfile.TemporaryDirectory() as out:
            opts = {"iterations": args.iterations, "expert_dir": args.expert_dir, **options}
            run = subprocess.run([sys.executable, "-c", CHILD, str(ipc), json.dumps(opts), out],
                                 capture_output=True, text=True, check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append([label, result["peak_mib"], result["s_per_iteration"]])
        print(rows[-1], flush=True)
    print(tabulate(rows, headers=["setting", "peak RSS MiB", "s / iteration"], tablefmt="github"))


if __name__ == "__main__":
    main()
