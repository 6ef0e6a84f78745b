"""Peak memory of a run: the resident high-water mark is reset at the start, so each run reports its own peak."""

from __future__ import annotations

import sys

import pytest
import torch

from avdistill.memory import peak_memory
from avdistill.methods import distill

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-run reset needs /proc (Linux)")


@linux
def test_each_block_reports_its_own_peak_not_the_largest_before_it():
    with peak_memory() as big:
        block = torch.ones(400 * 2**20 // 4)  # 400 MiB, touched
        del block
    with peak_memory() as small:
        torch.ones(1024).sum()
    assert big["scope"] == small["scope"] == "run"
    assert big["rss_mib"] - small["rss_mib"] > 300


def test_distillation_records_its_peak_memory(tiny_dataset):
    syn = distill(tiny_dataset, "dm", ipc=1, seed=0, progress=False, iterations=1)
    peak = syn.meta["peak_memory_mib"]
    assert peak["rss_mib"] > 50  # the interpreter and torch alone take more than 50 MiB
