"""benchmarks/time_to_accuracy.py end to end on a tiny dataset: both arms, their marks, the figure and the doc section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avdistill.data.storage import save_dataset
from conftest import make_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"


def test_time_to_accuracy_runs_both_arms_and_writes_its_section(tmp_path):
    data = save_dataset(make_dataset(num_classes=3, train_per_class=8, test_per_class=4), tmp_path / "tiny.safetensors")
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nkept\n\n<!-- time-to-accuracy:begin -->\nold\n<!-- time-to-accuracy:end -->\n")
    out = tmp_path / "tta.json"
    subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--ipc", "1", "--ref-iterations", "2",
                    "--iterations", "2", "--every", "1", "--sets", "1", "--runs", "1", "--json", str(out),
                    "--doc", str(doc)], check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    for arm in ("reference", "avdistill"):
        points = [p for p in result["points"] if p["arm"] == arm]
        assert [p["iteration"] for p in points] == [0, 1, 2], arm
        assert all(p["set"] == 0 and len(p["accuracies"]) == 1 for p in points)
        seconds = [p["seconds"] for p in points]
        assert seconds[0] > 0 and seconds == sorted(seconds) and len(set(seconds)) == 3, (arm, seconds)
    assert result["settings"]["iterations"] == 2 and result["commit"]
    png = tmp_path / "figures" / "time-to-accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "\nold\n" not in text
    section = text.split("<!-- time-to-accuracy:begin -->")[1].split("<!-- time-to-accuracy:end -->")[0]
    assert "python benchmarks/time_to_accuracy.py --data" in section and "--json" not in section
    assert "![test accuracy against wall seconds](figures/time-to-accuracy.png)" in section
    assert "**Target**" in section and ("avdistill's mean first reaches it" in section or "**Not reached**" in section)
