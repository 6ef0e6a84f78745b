"""benchmarks/time_to_accuracy.py end to end on a tiny dataset (both arms, marks, figure, doc section, resuming)
and the arithmetic of its report."""

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
    command = [sys.executable, str(SCRIPT), "--data", str(data), "--ipc", "1", "--ref-iterations", "2", "--iterations",
               "2", "--every", "1", "--runs", "1", "--json", str(out), "--doc", str(doc)]
    subprocess.run([*command, "--sets", "1"], check=True, stdout=subprocess.DEVNULL)
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

    # a rerun with more sets keeps the measured one (same settings, same code) and adds the next seed
    rerun = subprocess.run([*command, "--sets", "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    assert "sets [0] already measured" in rerun.stderr
    again = json.loads(out.read_text())
    assert [p for p in again["points"] if p["set"] == 0] == result["points"]
    assert sorted({(p["arm"], p["set"]) for p in again["points"]}) == [(a, s) for a in ("avdistill", "reference")
                                                                        for s in (0, 1)]
    assert "2 synthetic sets per arm (seeds 0, 1)" in doc.read_text()


def test_a_recipe_changes_the_avdistill_arm_and_the_reference_keeps_its_own_marks(tmp_path):
    data = save_dataset(make_dataset(num_classes=3, train_per_class=8, test_per_class=4), tmp_path / "tiny.safetensors")
    doc = tmp_path / "BENCHMARKS.md"
    recipe = tmp_path / "best.toml"  # as a tune writes it: run keys, budget iterations and the chosen options
    recipe.write_text('method = "avdd"\ndata = "x"\nipc = 1\nseed = 0\niterations = 100\ninit = "real"\n'
                      'lr_audio = 0.05\nreal_per_class = 64\n')
    out = tmp_path / "tta.json"
    subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--ipc", "1", "--ref-iterations", "2",
                    "--iterations", "2", "--every", "1", "--ref-every", "2", "--runs", "1", "--sets", "1",
                    "--recipe", str(recipe), "--json", str(out), "--doc", str(doc)], check=True,
                   stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    assert result["settings"]["recipe_options"] == {"init": "real", "lr_audio": 0.05}  # the cpu budget's 64: no change
    marks = {arm: [p["iteration"] for p in result["points"] if p["arm"] == arm] for arm in ("reference", "avdistill")}
    assert marks == {"reference": [0, 2], "avdistill": [0, 1, 2]}
    assert "with the recipe of `--recipe`" in doc.read_text() and "init real" in doc.read_text()
    recipe.write_text('method = "dm"\n')
    bad = subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--recipe", str(recipe), "--json",
                          str(out), "--doc", str(doc)], capture_output=True, text=True)
    assert bad.returncode != 0 and "not an AVDD recipe" in bad.stderr and "Traceback" not in bad.stderr


def measured(avdistill_marks: list[tuple[int, float, float]]) -> dict:
    """A run's JSON: 2 sets; the reference ends at 50 % after 100 s; avdistill's (iteration, seconds, accuracy)."""
    ref = [(0, 10.0, 0.30), (50, 55.0, 0.45), (100, 100.0, 0.50)]
    points = [{"arm": arm, "set": s, "iteration": it, "seconds": sec + s,
               "accuracies": [acc - 0.01 * s, acc + 0.01 * s]}
              for arm, marks in (("reference", ref), ("avdistill", avdistill_marks)) for s in (0, 1)
              for it, sec, acc in marks]
    return {"settings": {"data": "av-digits-hard", "ipc": 10, "ref_iterations": 100, "iterations": None, "every": 50,
                         "runs": 2}, "sets": 2, "commit": "abc1234", "threads": 1, "cpu_count": 2,
            "dataset": {"name": "av-digits-hard"}, "points": points,
            "loads": [{"set": s, "arm": a, "load": 2.0} for s in (0, 1) for a in ("reference", "avdistill")]}


def test_the_ratio_is_the_references_seconds_over_the_first_mark_reaching_its_accuracy(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import time_to_accuracy

    doc, figure = tmp_path / "B.md", tmp_path / "f.png"
    text = time_to_accuracy.report(measured([(0, 10.0, 0.30), (50, 20.5, 0.50), (100, 30.0, 0.55)]), doc, figure)
    # reference: mean 100.5 s at 50 %; avdistill first at its mean >= 50 % at iteration 50, 21.0 s on average
    assert "first reaches it at iteration 50" in text and "**4.8x**" in text and "100.5 s" in text
    # at 50 % it only ties the target; beyond both stds (here 0) first at iteration 100: 100.5 / 30.5 s
    assert "more than both standard deviations at iteration 100" in text and "**3.3x**" in text
    free = measured([(0, 0.0, 0.51), (50, 20.0, 0.52), (100, 30.0, 0.55)])
    for p in free["points"]:
        if p["arm"] == "avdistill" and p["iteration"] == 0:
            p["seconds"] = 0.001  # an initial set drawn at no cost (random real pairs), in both sets
    text = time_to_accuracy.report(free, doc, figure)
    # an initial set that matches the target at no cost gives no ratio; the first mark beyond noise at real time does
    assert "first reaches it at iteration 0" in text and "says nothing about speed" in text
    assert "more than both standard deviations at iteration 50" in text and "**4.9x**" in text  # 100.5 / 20.5 s
    text = time_to_accuracy.report(measured([(0, 10.0, 0.30), (50, 20.0, 0.45), (100, 30.0, 0.495)]), doc, figure)
    assert "**Not reached**" in text and "x** less" not in text
    assert doc.read_text().count("time-to-accuracy:begin") == 1 and figure.exists()
