#!/usr/bin/env bash
# docs/DAVDD.md "Wall time: DAVDD vs AVDD in the same run": AVDD and DAVDD one after another on the same
# machine (IPC 10, seed 0, the methods benchmark's budget), twice each with DAVDD's bank cached in BANKS,
# then DAVDD training a fresh bank. Prints wall seconds (synthetic.json) and peak RSS (/usr/bin/time -v).
# Usage: benchmarks/davdd_timing.sh OUT [BANKS]   (BANKS default: runs/bench-methods/davdd-banks)
set -euo pipefail
T=${1:?usage: benchmarks/davdd_timing.sh OUT [BANKS]}
BANKS=${2:-runs/bench-methods/davdd-banks}
B="--ipc 10 --seed 0 --quiet --iterations 50 --real-per-class 32 --herding-epochs 10"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$T"
run() {  # name, then the distill options
  local name=$1; shift
  /usr/bin/time -v -o "$T/$name.time" avdistill distill "$@" --out "$T/$name" $B
  python3 -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))['meta']['wall_seconds'], 's,',
              [l.split(':')[1].strip() for l in open(sys.argv[3]) if 'Maximum resident' in l][0], 'KiB peak RSS')" \
      "$name" "$T/$name/synthetic.json" "$T/$name.time"
}
run avdd1 --method avdd
run davdd1 --method davdd --bank-dir "$BANKS"
run avdd2 --method avdd
run davdd2 --method davdd --bank-dir "$BANKS"
run davdd-fresh --method davdd --bank-dir "$T/fresh-bank"
