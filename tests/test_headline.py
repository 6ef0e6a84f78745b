"""benchmarks/headline.py: README's headline table is built from a bench's results.json, never typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "headline.py"


def cell(method, ipc, s, accs, seconds=None, rss=None):
    settings = {"method": method, "ipc": ipc, "set": s, "head": "ensemble"}
    return {"table": "main", "row": method, "settings": settings, "accuracies": accs, "distill_seconds": seconds, "cache_seconds": {"filled": {}, "reused": {}},
            "peak_memory_mib": {"rss_mib": rss} if rss else None}


def test_headline_table_counts_and_names_ties_from_the_numbers(tmp_path):
    cells = [cell("random", 1, s, [0.20, 0.22], 0.0, 500.0) for s in range(2)]
    cells += [cell("dm", 1, 0, [0.40, 0.42], 30.0, 900.0), cell("dm", 1, 1, [0.41, 0.43], 34.0, 910.0)]
    cells += [cell("avdd", 1, 0, [0.39, 0.44], 50.0, 1000.0), cell("avdd", 1, 1, [0.40, 0.45], 54.0, 1010.0)]
    cells.append({"table": "main", "row": "whole data", "settings": {"method": "whole data", "head": "ensemble"},
                  "accuracies": [0.7, 0.72]})
    results = {"grid": {"data": "tiny", "methods": ["random", "dm", "avdd"], "ipcs": [1], "sets": 2, "runs": 2,
                        "whole_data_runs": 2}, "command": "avdistill bench --data tiny", "cells": cells}
    path, doc = tmp_path / "results.json", tmp_path / "README.md"
    path.write_text(json.dumps(results))
    doc.write_text("# title\n\n<!-- headline:begin -->\nold\n<!-- headline:end -->\n\nafter\n")
    subprocess.run([sys.executable, str(SCRIPT), str(path), "--commit", "abc1234", "--doc", str(doc)], check=True,
                   capture_output=True)
    text = doc.read_text()
    assert "\nold\n" not in text and text.rstrip().endswith("after")
    assert "- IPC 1 and whole data: commit abc1234, `avdistill bench --data tiny`" in text
    assert "| dm | 41.5 ± 1.1 (n=4) | 32 ± 2 (n=2) | 905 ± 5 (n=2) |" in text
    assert "| whole data | 71.0 ± 1.0 (n=2) | – | – |" in text
    # avdd (42.0 ± 2.5) has the best mean; dm's 0.5-point gap is within noise, random's 21-point gap is not.
    assert "- IPC 1: best mean avdd; within noise of it (gap not above both stds): dm." in text
