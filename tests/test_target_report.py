"""benchmarks/target.py: the new method's comparison table and target verdicts, from a bench results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "target.py"


def cell(method: str, ipc: int | None, s: int, accs: list[float], a: list[float], v: list[float],
         seconds: float | None = None, mib: float | None = None) -> dict:
    record = {"table": "main", "row": method, "settings": {"method": method, "ipc": ipc, "set": s, "head": "ensemble"},
              "accuracies": accs, "branch_accuracies": {"a": a, "v": v}}
    if seconds is not None:
        record.update(distill_seconds=seconds, cache_seconds={"filled": {}, "reused": {"features": 10.0}},
                      peak_memory_mib={"rss_mib": mib})
    return record


def results(tmp_path: Path) -> Path:
    cells = []
    # IPC 1: avmmd 40 ± 1 vs avdd 30 ± 1 (+10, met), dm 39 ± 2 (+1, within noise), herding 20 (met).
    for s in range(2):
        cells += [cell("avmmd", 1, s, [0.39, 0.41], [0.2, 0.3], [0.3, 0.4], 50.0 + s, 900.0),
                  cell("avdd", 1, s, [0.29, 0.31], [0.2, 0.2], [0.3, 0.3], 50.0, 500.0),
                  cell("davdd", 1, s, [0.25, 0.25], [0.2, 0.2], [0.3, 0.3], 90.0, 600.0),
                  cell("dm", 1, s, [0.37, 0.41], [0.2, 0.2], [0.3, 0.3], 30.0, 400.0),
                  cell("herding", 1, s, [0.20, 0.20], [0.2, 0.2], [0.3, 0.3], 5.0, 300.0)]
        # IPC 10: avmmd 66 ± 1 vs davdd 65 ± 1: +1, short of the 2-point lead; 3 x AVDD's time.
        cells += [cell("avmmd", 10, s, [0.65, 0.67], [0.4, 0.4], [0.5, 0.5], 290.0, 900.0),
                  cell("avdd", 10, s, [0.60, 0.60], [0.4, 0.4], [0.5, 0.5], 90.0, 800.0),
                  cell("davdd", 10, s, [0.64, 0.66], [0.4, 0.4], [0.5, 0.5], 150.0, 900.0)]
    cells.append({"table": "main", "row": "whole data", "settings": {"method": "whole data", "head": "ensemble"},
                  "accuracies": [0.7, 0.7], "branch_accuracies": {"a": [0.5, 0.5], "v": [0.6, 0.6]}})
    path = tmp_path / "results.json"
    grid = {"data": "av-digits-hard", "methods": ["herding", "dm", "avdd", "davdd", "avmmd"], "ipcs": [1, 10],
            "sets": 2, "runs": 2, "whole_data_runs": 2}
    path.write_text(json.dumps({"grid": grid,
                                "command": "avdistill bench ...", "cells": cells}))
    return path


def test_comparison_and_target_sections_from_the_cells(tmp_path):
    doc = tmp_path / "AVMMD.md"
    doc.write_text("# AV-MMD\n\nkept\n")
    subprocess.run([sys.executable, str(SCRIPT), str(results(tmp_path)), "--commit", "abc1234", "--doc", str(doc)],
                   check=True, stdout=subprocess.DEVNULL)
    text = doc.read_text()
    assert text.startswith("# AV-MMD\n\nkept\n") and "IPC 1, IPC 10 and whole data: commit abc1234" in text
    table = text.split("<!-- comparison:begin -->")[1].split("<!-- comparison:end -->")[0]
    rows = {(r.split("|")[1].strip(), r.split("|")[2].strip()): [x.strip() for x in r.split("|")[3:-1]]
            for r in table.splitlines() if r.startswith("| ") and "---" not in r}
    assert rows[("method", "IPC")] == ["AV %", "A %", "V %", "cold s/set", "peak MiB"]  # no retrieval cells: no R@1
    assert rows[("avmmd", "1")] == ["40.0 ± 1.0 (n=4)", "25.0 ± 5.0 (n=4)", "35.0 ± 5.0 (n=4)", "60 ± 0 (n=2)",
                                    "900 ± 0 (n=2)"]
    assert rows[("whole data", "all")][:3] == ["70.0 ± 0.0 (n=2)", "50.0 ± 0.0 (n=2)", "60.0 ± 0.0 (n=2)"]
    verdicts = [r.split("|")[1:-1] for r in text.split("<!-- target:begin -->")[1].splitlines() if r.startswith("| ")]
    verdicts = {(c.strip(), ipc.strip()): (evidence.strip(), met.strip()) for c, ipc, evidence, met in verdicts[1:]}
    lead = "≥ 2 points over the best of AVDD and DAVDD, above both stds"
    assert verdicts[(lead, "1")] == ("40.0 ± 1.0 (n=4) vs avdd 30.0 ± 1.0 (n=4): +10.0", "**yes**")
    assert verdicts[(lead, "10")] == ("66.0 ± 1.0 (n=4) vs davdd 65.0 ± 1.0 (n=4): +1.0", "no")
    assert verdicts[("above dm, gap above both stds", "1")][1] == "no"  # +1.0 < dm's std 2.0
    assert verdicts[("above herding, gap above both stds", "1")][1] == "**yes**"
    assert verdicts[("cold wall time per set ≤ 1.5 × AVDD's (in the bench)", "10")] == ("300 vs 100 s: 3.00 ×", "no")
    assert verdicts[("peak memory per set ≤ 1.5 × AVDD's (in the bench)", "1")] == ("900 vs 500 MiB: 1.80 ×", "no")


def test_a_later_report_replaces_the_ipcs_it_measured_and_cost_cells_give_time_and_memory(tmp_path):
    from avdistill.cache import code_digest

    first = results(tmp_path)
    later = json.loads(first.read_text())  # IPC 10 again, now avmmd 70 ± 1: +5 over davdd
    later["cells"] = [c for c in later["cells"] if c["settings"].get("ipc") == 10]
    for c in later["cells"]:
        if c["settings"]["method"] == "avmmd":
            c["accuracies"] = [0.69, 0.71]
    later["command"] = "avdistill bench --ipc 10"
    second = tmp_path / "later.json"
    second.write_text(json.dumps(later))
    costs = tmp_path / "cost"
    code = code_digest(".")
    for method, seconds, mib in (("avdd", 100.0, 600.0), ("avmmd", 140.0, 700.0)):
        for s in range(2):
            cell_file = costs / "cells" / f"{method}-ipc10-set{s}.json"
            cell_file.parent.mkdir(parents=True, exist_ok=True)
            cell_file.write_text(json.dumps({"settings": {"data": "d", "method": method, "ipc": 10, "seed": s,
                                                          "budget": "cpu"},
                                             "wall_seconds": seconds, "rss_mib": mib, "code_sha256": code,
                                             "commit": "abc1234"}))
    doc = tmp_path / "AVMMD.md"
    subprocess.run([sys.executable, str(SCRIPT), str(first), str(second), "--commit", "abc1234", "def5678",
                    "--cost", str(costs), "--doc", str(doc)], check=True, stdout=subprocess.DEVNULL)
    text = doc.read_text()
    assert "IPC 1 and whole data: commit abc1234" in text and "IPC 10: commit def5678, `avdistill bench --ipc 10`" in text
    verdicts = {tuple(x.strip() for x in r.split("|")[1:3]): r.split("|")[3:-1]
                for r in text.split("<!-- target:begin -->")[1].splitlines() if r.startswith("| ")}
    lead = "≥ 2 points over the best of AVDD and DAVDD, above both stds"
    assert [x.strip() for x in verdicts[(lead, "10")]] == ["70.0 ± 1.0 (n=4) vs davdd 65.0 ± 1.0 (n=4): +5.0", "**yes**"]
    time_row = [x.strip() for x in verdicts[("cold wall time per set ≤ 1.5 × AVDD's (cold, a process per set)", "10")]]
    assert time_row == ["140 vs 100 s: 1.40 ×", "**yes**"]
    assert ("cold wall time per set ≤ 1.5 × AVDD's (cold, a process per set)", "1") not in verdicts  # not measured
    stale = json.loads((costs / "cells" / "avdd-ipc10-set0.json").read_text())
    (costs / "cells" / "avdd-ipc10-set0.json").write_text(json.dumps({**stale, "code_sha256": "other"}))
    refused = subprocess.run([sys.executable, str(SCRIPT), str(first), "--commit", "abc1234", "--cost", str(costs),
                              "--doc", str(doc)], capture_output=True, text=True)
    assert refused.returncode != 0 and "measured with other code (commit abc1234)" in refused.stderr


def test_cost_measures_each_set_in_a_fresh_process_and_reuses_cells_of_the_same_code(tiny_dataset_file, tmp_path):
    script = SCRIPT.with_name("cost.py")
    out = tmp_path / "cost"
    measure = [sys.executable, str(script), "--data", str(tiny_dataset_file.source_path), "--methods", "dm,avmmd",
               "--ipc", "1", "--sets", "2", "--budget", "cpu", "--out", str(out)]
    first = subprocess.run(measure, capture_output=True, text=True, check=True)
    assert first.stdout.count("ipc 1 set") == 4  # 2 methods x 2 sets, each a process of its own
    cells = {p.name: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert sorted(cells) == ["avmmd-ipc1-set0.json", "avmmd-ipc1-set1.json", "dm-ipc1-set0.json", "dm-ipc1-set1.json"]
    for c in cells.values():
        assert c["wall_seconds"] > 0 and c["rss_mib"] > 50 and c["memory_scope"] == "run"
    again = subprocess.run(measure, capture_output=True, text=True, check=True)
    assert again.stdout == ""  # every cell reused: same settings, same code
    shown = subprocess.run([sys.executable, str(script), "--report", "--methods", "dm,avmmd", "--out", str(out)],
                           capture_output=True, text=True, check=True).stdout
    row = next(r for r in shown.splitlines() if r.startswith("| 1 |"))
    mean = lambda m, key: sum(cells[f"{m}-ipc1-set{s}.json"][key] for s in range(2)) / 2  # noqa: E731
    assert f"{mean('avmmd', 'wall_seconds') / mean('dm', 'wall_seconds'):.2f} ×" in row
    assert f"{mean('avmmd', 'rss_mib') / mean('dm', 'rss_mib'):.2f} ×" in row
