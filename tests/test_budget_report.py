"""benchmarks/budget.py --report-from: several methods' validation curves as one table in a doc section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "budget.py"


def curve(path: Path, method: str, points: list[tuple[int, float, list[float]]]) -> str:
    path.write_text(json.dumps({"method": method, "data": "av-digits-hard", "ipc": 10, "seed": 0, "commit": "abc1234",
                                "points": [{"iterations": it, "wall_seconds": sec, "val_accuracies": acc}
                                           for it, sec, acc in points]}))
    return str(path)


def test_report_writes_one_table_of_every_curve_into_its_section(tmp_path):
    doc = tmp_path / "TUNING.md"
    doc.write_text("# Tuning\n\nkept\n\n<!-- budget-curves:begin -->\nold\n<!-- budget-curves:end -->\n\nafter\n")
    files = [curve(tmp_path / "dm-budget.json", "dm", [(100, 93.0, [0.45, 0.47]), (300, 221.4, [0.48, 0.49])]),
             curve(tmp_path / "avdd-budget.json", "avdd", [(25, 79.9, [0.66, 0.69]), (100, 167.0, [0.64, 0.65])])]
    subprocess.run([sys.executable, str(SCRIPT), "--report-from", *files, "--doc", str(doc)], check=True,
                   stdout=subprocess.DEVNULL)
    text = doc.read_text()
    assert text.startswith("# Tuning\n\nkept\n") and text.rstrip().endswith("after") and "\nold\n" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| iterations | dm | avdd |"
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| 25", "| 100", "| 300"]  # every count of any curve, sorted
    assert rows[1] == "| 25 |  | 67.50 ± 1.50 (n=2) (80 s) |"  # a count a curve lacks stays empty
    assert rows[2] == "| 100 | 46.00 ± 1.00 (n=2) (93 s) | 64.50 ± 0.50 (n=2) (167 s) |"
    assert "commit abc1234" in text


def test_measuring_needs_an_output_file():
    run = subprocess.run([sys.executable, str(SCRIPT), "--method", "dm"], capture_output=True, text=True)
    assert run.returncode == 2 and "--out is required" in run.stderr
