"""What checksum verification costs when loading a prepared dataset (the table in docs/RELIABILITY.md).

Writes a synthetic prepared dataset of `--clips` samples (audio float16 [1,128,56], frames
uint8 [3,112,112]: about 52 KB a clip) to a temporary folder, then times ``load_prepared``
with and without ``mmap`` and ``verify``, twice each, beside a plain sha256 of the whole file.

  python benchmarks/checksum_cost.py --clips 7000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from avdistill.data.audio import MelParams
from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.storage import load_prepared, save_dataset
from avdistill.files import sha256_file


def random_split(n: int, g: torch.Generator) -> AVSplit:
    return AVSplit(torch.randn(n, 1, 128, 56, generator=g).half(),
                   torch.randint(0, 256, (n, 3, 112, 112), generator=g, dtype=torch.uint8), torch.arange(n) % 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=7000, help="samples in the dataset (1/7 go to test)")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    prep = Preprocessing(mel=MelParams(), frame_size=(112, 112), frame_channels=3, frame_mean=(0.4,) * 3,
                         frame_std=(0.2,) * 3)
    test = args.clips // 7
    dataset = AVDataset("checksum-cost", [f"c{i}" for i in range(10)], random_split(args.clips - test, g),
                        random_split(test, g), prep)
    with tempfile.TemporaryDirectory() as folder:
        path = save_dataset(dataset, Path(folder) / "big.safetensors")
        print(f"{args.clips} clips, {path.stat().st_size / 1e6:.0f} MB")
        for repeat in range(2):
            for mmap in (True, False):
                for verify in (False, True):
                    start = time.perf_counter()
                    load_prepared(path, mmap=mmap, verify=verify)
                    print(f"run {repeat}: mmap={mmap} verify={verify}: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        sha256_file(path)
        print(f"sha256 of the whole file: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
