"""benchmarks/reproduce.py: a stored set is distilled again from its recorded settings and compared bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import avdistill
from avdistill.synthetic import load_synthetic

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"


def test_a_stored_set_reproduces_and_a_changed_one_does_not(tiny_dataset_file, tmp_path):
    for name in ("kept", "changed"):
        avdistill.distill(tiny_dataset_file, "avmmd", ipc=2, seed=1, out=tmp_path / name, iterations=3,
                          real_per_class=6, herding_epochs=1, progress=False, matched_per_class=5)
    changed = load_synthetic(tmp_path / "changed" / "synthetic.safetensors")
    changed.frames[0, 0, 0, 0] += 1e-3  # what other code would have made
    changed.save(tmp_path / "changed" / "synthetic.safetensors")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "kept"), str(tmp_path / "changed")],
                          capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'kept'}: the same, bit for bit")
    assert lines[1].startswith(f"{tmp_path / 'changed'}: DIFFERENT")
