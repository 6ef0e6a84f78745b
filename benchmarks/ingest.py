"""Benchmark and end-to-end check of media ingestion (docs/INGEST.md).

``make-clips`` writes a folder of real H.264 + AAC clips (tests/media.py: a class tone and a
class colour per clip), optionally with a few broken ones. ``throughput`` prepares the same
folder with 1 and with 2 worker processes in one run (alternating, repeated) and reports
clips/second (wall clock of the whole prepare: listing, worker start-up, decoding, writing the
dataset) as a Markdown table plus a JSON record.

    python benchmarks/ingest.py make-clips /tmp/clips --per-class 20 --broken
    OMP_NUM_THREADS=1 python benchmarks/ingest.py throughput --clips 200 --work /tmp/ingest-bench
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import write_clip, write_not_media, write_truncated  # noqa: E402

from avdistill.data.ingest import DecodeParams, decode_windows, folder_clips, prepare_clips  # noqa: E402
from avdistill.files import versions, write_json  # noqa: E402

BROKEN = {  # file -> how it is broken
    "c0/truncated.mp4": "first 40% of the bytes of a good clip",
    "c1/no_audio.mp4": "H.264 video only",
    "c2/no_video.mp4": "AAC audio only",
    "c3/empty.mp4": "zero bytes",
    "c4/short.mp4": "0.4 s long",
    "c5/notes.mp4": "a text file with a video extension",
    "c6/clip.mov.txt": "a good clip with a non-video extension",
}


def make_clips(root: Path, classes: int, per_class: int, size: int, broken: bool) -> None:
    """`per_class` 1-s clips of `size`² at 25 fps, AAC 44.1 kHz stereo, per class c0..; plus BROKEN."""
    for c in range(classes):
        for i in range(per_class):
            write_clip(root / f"c{c}" / f"clip{i:03d}.mp4", label=c, seconds=1.0, size=size, sample_rate=44100,
                       seed=1000 * c + i)
    if broken:
        write_truncated(root / "c0/truncated.mp4", size=size, sample_rate=44100)
        write_clip(root / "c1/no_audio.mp4", label=1, size=size, audio=False)
        write_clip(root / "c2/no_video.mp4", label=2, video=False, sample_rate=44100)
        (root / "c3/empty.mp4").write_bytes(b"")
        write_clip(root / "c4/short.mp4", label=4, seconds=0.4, size=size, sample_rate=44100)
        write_not_media(root / "c5/notes.mp4")
        write_clip(root / "c6/clip.mov.txt", label=6, size=size, sample_rate=44100)


def throughput(args) -> None:
    """Wall clock of whole prepare runs, worker counts alternated over repeats, after one warm-up.

    The warm-up decodes one clip so that one-off imports (librosa's numba-compiled filterbank code
    costs seconds) are charged to no configuration.
    """
    torch.set_num_threads(1)
    clips_dir = args.work / "clips"
    if not clips_dir.is_dir():
        make_clips(clips_dir, 10, args.clips // 10, 224, broken=False)
    clips, skips, source = folder_clips(clips_dir)
    decode_windows(clips[0].path, clips[0].offsets, DecodeParams())
    load = os.getloadavg()[0]
    times: dict[int, list[float]] = {w: [] for w in args.workers}
    n = 0
    for _ in range(args.repeats):
        for workers in args.workers:
            out = args.work / f"workers{workers}.safetensors"
            start = time.perf_counter()
            dataset = prepare_clips(clips, skips, source, out, DecodeParams(), workers=workers, restart=True,
                                    progress=False)
            times[workers].append(time.perf_counter() - start)
            n = len(dataset.train) + len(dataset.test)
    rows = [[w, n, " / ".join(f"{t:.1f}" for t in ts), f"{n / statistics.fmean(ts):.1f}"] for w, ts in times.items()]
    print(tabulate(rows, headers=["workers", "clips", "wall s (each repeat)", "clips/s (mean time)"],
                   tablefmt="github"))
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "load_average_1min_at_start": round(load, 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    print(f"machine: {machine}")
    write_json(args.work / "throughput.json", {
        "clips": n, "seconds": times, "clips_per_second": {w: n / statistics.fmean(ts) for w, ts in times.items()},
        "machine": machine, "clip": "1 s, 224x224, 25 fps H.264 + AAC 44.1 kHz stereo", "versions": versions()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-clips", help="write a folder of generated clips (root/<class>/<clip>.mp4)")
    make.add_argument("root", type=Path, help="folder to write")
    make.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    make.add_argument("--per-class", type=int, default=20, help="good clips per class (default: 20)")
    make.add_argument("--size", type=int, default=224, help="frame size of the clips (default: 224)")
    make.add_argument("--broken", action="store_true", help="add the broken files listed in BROKEN")
    bench = sub.add_parser("throughput", help="prepare 1-s 224² clips with 1 and 2 workers; report clips/s")
    bench.add_argument("--clips", type=int, default=200, help="clips to generate, 10 classes (default: 200)")
    bench.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2],
                       help="comma-separated worker counts (default: 1,2)")
    bench.add_argument("--repeats", type=int, default=3, help="runs per worker count, alternated (default: 3)")
    bench.add_argument("--work", type=Path, default=Path("/tmp/avdistill-ingest-bench"),
                       help="folder for the clips and outputs (default: /tmp/avdistill-ingest-bench)")
    args = parser.parse_args()
    if args.command == "make-clips":
        make_clips(args.root, args.classes, args.per_class, args.size, args.broken)
        print(f"wrote {args.classes * args.per_class} clips" + (f" and {len(BROKEN)} broken files" if args.broken
                                                                 else "") + f" under {args.root}")
    else:
        throughput(args)


if __name__ == "__main__":
    main()
