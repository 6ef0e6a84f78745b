"""AVDD at full size on a GPU: the `avdd` encoders on VGGS-10K's shapes, timed, fp32 and bf16.

Generated data of VGGS-10K's shapes (``generated.py``: 10 classes, 1x128x56 spectrograms,
3x224x224 frames, 128 real pairs per class), avdistill's AVDD with its defaults but the initial
set (``--init``, default ``real``: herding's feature networks are trained before the loop in any
case and would only add set-up time), timed for ``--iterations`` iterations (default 200) after
the initial set is built, in each precision of ``--precision``; the 5000 iterations of the paper
are extrapolated from the measured rate (each draw's real means are computed once, in blocks of
64 draws, so a 200-iteration run computes the real side exactly as often per iteration as a
5000-iteration one). The real-means cache is a fresh empty folder, so its filling is timed.

One process, or every GPU through torchrun (NCCL; the classes are split across the processes,
:mod:`avdistill.distributed`):

  python benchmarks/gpu.py --device cuda
  torchrun --standalone --nproc_per_node=$(nvidia-smi -L | wc -l) benchmarks/gpu.py --device cuda
  python benchmarks/gpu.py --device cpu --iterations 2 --classes 2 --real-per-class 4 --ipc 1   # the CPU check
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_ITERATIONS = 5000


def timed_run(dataset, ipc: int, options: dict, device: str, group) -> dict:
    """Seconds of the initial set and of the iterations of one AVDD run (device synchronised at both marks)."""
    import torch

    from avdistill.methods.avdd import avdd_loss
    from avdistill.methods.base import RunContext, get_method, make_config
    from avdistill.methods.matching import distill_matching

    def sync():
        if torch.device(group.device).type == "cuda":
            torch.cuda.synchronize(group.device)

    with tempfile.TemporaryDirectory() as cache:
        cfg = make_config(get_method("avdd"), {**options, "real_cache": cache})
        marks = {}

        def step(matcher, it, audio, frames):
            if it == 0:
                sync()
                marks["loop"] = time.perf_counter()
            return avdd_loss(matcher(it, audio, frames), cfg.lam_jm, cfg.lam_mgm)

        if torch.device(group.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats(group.device)
        start = time.perf_counter()
        audio, _, _ = distill_matching(dataset, ipc, cfg, RunContext(seed=0, device=group.device, progress=False,
                                                                     group=group), step, "avdd")
        sync()
        end = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(group.device) / 2**30 if torch.device(group.device).type == "cuda" else None
    return {"init_seconds": marks["loop"] - start, "loop_seconds": end - marks["loop"], "iterations": cfg.iterations,
            "finite": bool(torch.isfinite(audio).all()), "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--real-per-class", type=int, default=128)
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--init", default="real", choices=("real", "herding"))
    parser.add_argument("--chunk", type=int, default=256, help="samples per encoder call (bounds activation memory at "
                                                              "224x224: 128 channels x 224² x 4 B = 25 MiB a sample)")
    parser.add_argument("--json", help="write the results here (rank 0)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from avdistill import distributed
    from generated import vggs_shaped

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.py: --device cuda, but no CUDA device is visible (use --device cpu for the CPU check)")
    group = distributed.join(args.device)
    dataset = vggs_shaped(args.classes, args.real_per_class)
    results = {}
    for precision in args.precision.split(","):
        options = {"encoder": "avdd", "iterations": args.iterations, "real_per_class": args.real_per_class,
                   "init": args.init, "precision": precision, "chunk": args.chunk}
        results[precision] = r = timed_run(dataset, args.ipc, options, args.device, group)
        rate = r["iterations"] / r["loop_seconds"]
        r["iterations_per_s"] = rate
        r["extrapolated_seconds"] = r["init_seconds"] + PAPER_ITERATIONS / rate
        if group.leader:
            print(f"{precision}: {r['iterations']} iterations in {r['loop_seconds']:.1f} s ({rate:.3f} it/s), initial "
                  f"set {r['init_seconds']:.1f} s, {PAPER_ITERATIONS} iterations ~ {r['extrapolated_seconds'] / 60:.1f} "
                  f"min, peak GPU memory {r['peak_gib'] if r['peak_gib'] is None else round(r['peak_gib'], 1)} GiB",
                  flush=True)
    if group.leader and args.json:
        from avdistill.files import source_commit, versions, write_json

        commit = source_commit()
        device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
        write_json(Path(args.json), {"args": vars(args), "device": device, "processes": group.world_size,
                                     "commit": commit, "results": results, "versions": versions()})
    group.barrier()


if __name__ == "__main__":
    main()
