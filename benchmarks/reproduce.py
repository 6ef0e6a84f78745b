"""Does this code still make the same synthetic sets? Distil stored sets again from their recorded settings
and compare bit for bit.

Every synthetic.json records the method, IPC, seed, the options as given and the dataset; this distils the
set again with them at the checked-out code (one thread: rounding depends on the thread count) and prints
whether the audio and frames are equal, tensor for tensor. A change meant to leave a method's results alone
(a faster path, a memory bound) is checked against sets a benchmark already stored:

    OMP_NUM_THREADS=1 python benchmarks/reproduce.py runs/bench-dev/sets/avmmd-ipc1-set0 runs/bench-dev/sets/avmmd-ipc10-set0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import avdistill
from avdistill.data.embedded import NAMES as EMBEDDED_NAMES
from avdistill.files import source_commit
from avdistill.synthetic import load_synthetic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="run folders holding synthetic.safetensors and .json")
    args = p.parse_args(argv)
    differ = 0
    for folder in args.folders:
        meta = json.loads((folder / "synthetic.json").read_text())["meta"]
        stored = load_synthetic(folder / "synthetic.safetensors")
        source = meta["source"]  # an embedded dataset by its name (its path is the package of the time)
        dataset = avdistill.load_dataset(source["name"] if source["name"] in EMBEDDED_NAMES else source["path"])
        if dataset.checksum != meta["source"]["sha256"]:
            raise SystemExit(f"{folder}: the dataset differs from the one the set was distilled from")
        again = avdistill.distill(dataset, meta["method"], meta["ipc"], meta["seed"], progress=False,
                                  budget=meta.get("budget"), **meta["config"])
        same = torch.equal(stored.audio, again.audio) and torch.equal(stored.frames, again.frames)
        differ += not same
        print(f"{folder}: {'the same, bit for bit' if same else 'DIFFERENT'} (stored by code "
              f"{meta['code_sha256'][:12]}, distilled again at commit {source_commit()})", flush=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
