"""Peak memory of one distillation, for the reports' memory column.

On Linux the kernel keeps the process's resident-set high-water mark (``VmHWM``) and resets it to the
current size on request (``/proc/self/clear_refs``, value 5), so a run in a long ``bench`` process
measures its own peak, not the largest of the runs before it. The figure is the whole process's peak
resident memory while the run lasted (the loaded dataset and the interpreter included). On CUDA the
allocator's peak is recorded as well. Elsewhere (no /proc) the process's lifetime peak from
``getrusage`` is the best available, and the record says so.
"""

from __future__ import annotations

import re
import resource
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_resident_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _resident_peak_mib() -> float:
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@contextmanager
def peak_memory(device: str = "cpu"):
    """Measure the peak memory of the enclosed block; yields a dict filled on exit with ``rss_mib`` (and
    ``cuda_mib`` on a CUDA device, ``scope`` "run" or "process" for the resident figure)."""
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    record: dict = {"scope": "run" if _reset_resident_peak() else "process"}
    yield record
    record["rss_mib"] = round(_resident_peak_mib(), 1)
    if cuda:
        record["cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
