"""Run under torchrun by tests/test_distributed.py: distils a prepared dataset with several methods in one
process group (the worker's own, which distill() joins) and writes each result (rank 0) for the test to compare.

``python dist_worker.py DATASET OUT JOBS.json``; JOBS maps a name to {"method", "options", "interrupt_after"}:
with ``interrupt_after`` n the run is interrupted (as by Ctrl-C) right after its n-th checkpoint on every
process, then rerun with the same output folder, so it resumes from the per-process checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

import avdistill
from avdistill.data.storage import load_prepared
from avdistill.errors import ConfigError
from interrupt import interrupt_after_checkpoints


def main(dataset_path: str, out: str, jobs_path: str) -> None:
    dataset = load_prepared(dataset_path)
    dist.init_process_group("gloo")
    report = {}
    for name, job in json.loads(Path(jobs_path).read_text()).items():
        folder = Path(out) / name
        try:
            if job.get("interrupt_after"):
                interrupt_after_checkpoints(job["interrupt_after"])
                try:
                    avdistill.distill(dataset, job["method"], out=folder, progress=False, **job["options"])
                except KeyboardInterrupt:
                    dist.barrier()  # every process has written its checkpoint
                    report[f"{name}.checkpoints"] = sorted(p.parent.name for p in folder.glob("rank-*/checkpoint*"))
            avdistill.distill(dataset, job["method"], out=folder, progress=False, **job["options"])
        except ConfigError as exc:
            report[name] = f"ConfigError: {exc}"
    if dist.get_rank() == 0:
        (Path(out) / "report.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
