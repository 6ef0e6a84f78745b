"""Memory and speed of `avdistill prepare --hf` (docs/INGEST.md, section "hf").

Writes local Parquet datasets of generated rows (the clips of tests/media.py as `datasets` rows: a
224x224 PNG frame with a class colour, 1 s of a class tone as a 44.1 kHz stereo 16-bit WAV), then
prepares each with ``avdistill prepare --hf`` in a child process, measuring its wall clock and its
peak resident memory (the child's ``ru_maxrss``; workers are separate processes, so the memory
rows use one worker). Peak memory that stays flat while the rows grow shows the chunked stream:
the prepared dataset is never held in memory whole.

    OMP_NUM_THREADS=1 python benchmarks/hf.py --rows 500,2000 --work /tmp/avdistill-hf-bench
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import class_colour, tone_hz  # noqa: E402

from docsection import write_section  # noqa: E402

from avdistill.files import source_commit, versions, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARD = 250  # rows per Parquet file


def _row(label: int, seed: int, size: int = 224, rate: int = 44100) -> tuple[bytes, bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = class_colour(label)
    pixels = np.minimum(pixels + rng.integers(0, 12, pixels.shape), 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * tone_hz(label) * t) + 0.01 * rng.standard_normal(rate)
    pcm = (np.stack([tone, tone], 1) * 32767).astype("<i2")
    wav = io.BytesIO()
    with wave.open(wav, "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return png.getvalue(), wav.getvalue()


def make_rows(folder: Path, rows: int, classes: int = 10) -> None:
    """`rows` rows in Parquet shards of SHARD rows (written shard by shard: the generator holds one)."""
    import datasets

    from avdistill.reporting.export import make_dataset

    folder.mkdir(parents=True, exist_ok=True)
    features = {"audio": datasets.Audio(), "image": datasets.Image(),
                "label": datasets.ClassLabel(names=[f"c{c}" for c in range(classes)])}
    for shard, start in enumerate(range(0, rows, SHARD)):
        made = [(i % classes, *_row(i % classes, i)) for i in range(start, min(start + SHARD, rows))]
        columns = {"audio": [{"bytes": w, "path": None} for _, _, w in made],
                   "image": [{"bytes": p, "path": None} for _, p, _ in made], "label": [c for c, _, _ in made]}
        make_dataset(columns, features).to_parquet(str(folder / f"part-{shard:05d}.parquet"))


# The child reports its own peak (VmHWM of its address space): ru_maxrss would count the memory of this
# process, which the child held between fork and exec.
CHILD = ("import sys; from avdistill.cli import main; code = main(sys.argv[1:]); "
         "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))); sys.exit(code)")


def prepare(source: Path, out: Path, workers: int, chunk: int) -> dict:
    """Run prepare --hf in a child process; its wall clock and peak RSS."""
    command = [sys.executable, "-c", CHILD, "prepare", "--hf", str(source), "--out", str(out), "--workers",
               str(workers), "--chunk-size", str(chunk), "--restart", "--quiet"]
    start = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"prepare failed: {child.stderr}")
    peak_kib = int(child.stdout.strip().splitlines()[-1].split()[1])
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024, "out_mib": out.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="500,2000", help="comma-separated dataset sizes (default: 500,2000)")
    parser.add_argument("--chunk-size", type=int, default=64, help="prepare --chunk-size (default: 64)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/avdistill-hf-bench"), help="folder for the data")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "INGEST.md", help="Markdown file to update")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    commit = source_commit()  # the code the figures run on, before anything can change under the run
    results = []
    for rows in sizes:
        source = args.work / f"rows{rows}"
        if not source.is_dir():
            make_rows(source, rows)
        source_mib = sum(p.stat().st_size for p in source.glob("*.parquet")) / 2**20
        for workers in (1, 2) if rows == sizes[0] else (1,):
            result = prepare(source, args.work / f"rows{rows}-w{workers}.safetensors", workers, args.chunk_size)
            results.append({"rows": rows, "workers": workers, "source_mib": source_mib, **result})
            print(results[-1], flush=True)
    table = tabulate([[r["rows"], r["workers"], f"{r['source_mib']:.0f}", f"{r['out_mib']:.0f}", f"{r['seconds']:.1f}",
                       f"{r['rows'] / r['seconds']:.1f}", f"{r['peak_rss_mib']:.0f}"] for r in results],
                     headers=["rows", "workers", "Parquet MiB", "prepared MiB", "wall s", "rows/s",
                              "peak RSS MiB (main process, VmHWM)"], tablefmt="github")
    load = os.getloadavg()[0]
    single = [r for r in results if r["workers"] == 1]
    marginal = (single[-1]["rows"] - single[0]["rows"]) / (single[-1]["seconds"] - single[0]["seconds"])
    growth = single[-1]["peak_rss_mib"] - single[0]["peak_rss_mib"]
    data_growth = single[-1]["out_mib"] - single[0]["out_mib"]
    memory = (f"From {single[0]['rows']} to {single[-1]['rows']} rows the prepared data grow by {data_growth:.0f} MiB "
              f"and the main process's peak memory by {growth:.0f} MiB" +
              (": one Parquet row group and one chunk are in memory at a time, never the whole source or result."
               if growth < 0.25 * data_growth else "."))
    text = (f"Measured by `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hf.py --rows {args.rows} --chunk-size "
            f"{args.chunk_size}` at commit {commit} (2-core VM shared with other jobs; 1-minute load average "
            f"{load:.1f} at the end). Rows: 224x224 PNG frames, 1 s 44.1 kHz stereo 16-bit WAV; prepared at the "
            f"defaults (224² RGB, 11 kHz, 128 mels), chunks of {args.chunk_size} rows:\n\n{table}\n\n"
            f"Wall clock includes start-up (imports of torch, datasets and librosa's filterbank code: seconds on "
            f"this machine); one worker's marginal rate between the sizes is {marginal:.0f} rows/s. {memory}\n")
    print(text)
    write_section(args.doc, "hf", text)
    write_json(args.work / "hf-bench.json", {"results": results, "chunk_size": args.chunk_size, "versions": versions()})


if __name__ == "__main__":
    main()
