"""The command line end to end: demo (reduced), distill + evaluate, help texts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import avdistill
from avdistill.cli import main


def test_demo_end_to_end_reduced(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--ipc", "1,2", "--runs", "2", "--iterations", "3", "--epochs", "1",
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    for row in ("Random", "DM", "Whole data", "IPC 1", "IPC 2"):
        assert row in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracies"]) == {"Random", "DM", "Whole data"}
    assert len(results["accuracies"]["DM"]["IPC 2"]) == 2
    assert len(results["accuracies"]["Whole data"]["all"]) == 1
    assert results["dataset"]["name"] == "av-digits" and len(results["dataset"]["sha256"]) == 64
    for name in ("dm-ipc1", "dm-ipc2", "random-ipc1", "random-ipc2"):
        assert (out / name / "synthetic.safetensors").exists() and (out / name / "synthetic.json").exists()
    assert (out / "results.md").read_text().count("±") >= 5


def test_distill_then_evaluate_on_a_prepared_file(tiny_dataset_file, tmp_path, capsys):
    data = tiny_dataset_file.source_path
    assert main(["distill", "--data", data, "--method", "dm", "--ipc", "2", "--out", str(tmp_path / "dm"),
                 "--iterations", "3", "--real-per-class", "4", "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "dm" / "synthetic.safetensors"), "--data", data, "--runs", "2",
                 "--epochs", "2", "--whole-data", "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "IPC 2" in table and "Whole data" in table
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [len(r["accuracies"]) for r in report["results"]] == [2, 2]
    # The ensemble's audio and visual halves are printed as rows of their own, from the same runs.
    assert "ensemble: audio-only branch" in table and "ensemble: visual-only branch" in table
    assert [len(r["branch_accuracies"]["v"]) for r in report["results"]] == [2, 2]
    assert report["eval_config"]["epochs"] == 2


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.safetensors"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avdistill: error:") and "nope.safetensors: no such file" in err
    assert main(["distill", "--data", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["evaluate", "--help"], ["prepare", "--help"],
                                  ["distill", "--method", "dm", "--help"], ["tune", "--method", "avdd", "--help"]])
def test_help_documents_every_option(args):
    run = subprocess.run([sys.executable, "-m", "avdistill", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout
    if args[0] == "distill":
        assert "--real-per-class" in run.stdout and "(default: 64)" in run.stdout


def test_renamed_options_keep_their_old_spelling_and_say_so(capsys):
    """bench --method-option (was --set, beside --sets) and evaluate --encoders (was --arch, beside --encoder)."""
    for command, new, old in (("bench", "--method-option", "--set"), ("evaluate", "--encoders", "--arch")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert f"{new} METHOD.NAME=VALUE, {old} METHOD.NAME=VALUE" in shown if command == "bench" else \
            f"{new} ENCODERS, {old} ENCODERS" in shown
        assert f"{old} is the old spelling" in shown


def test_nested_options_are_flat_on_the_command_line_and_in_the_metadata(tiny_dataset_file, tmp_path):
    """DAVDD's bank, MTT's experts and herding init are nested configs; users and outputs see flat options."""
    from avdistill.methods import get_method, make_config

    cfg = make_config(get_method("davdd"), {"bank_size": 3, "herding_epochs": 2})
    assert cfg.bank.bank_size == 3 and cfg.herding.herding_epochs == 2
    syn = avdistill.distill(tiny_dataset_file, "herding", ipc=1, progress=False, feature_epochs=1,
                            out=tmp_path / "h")
    assert main(["distill", "--data", tiny_dataset_file.source_path, "--method", "dm", "--ipc", "1", "--out",
                 str(tmp_path / "dm"), "--iterations", "1", "--real-per-class", "2", "--herding-epochs", "1",
                 "--quiet"]) == 0
    meta = json.loads((tmp_path / "dm" / "synthetic.json").read_text())["meta"]
    assert meta["config"]["herding_epochs"] == 1 and "herding" not in meta["config"]
    assert syn.meta["config"] == {"space": "av", "encoder": "small", "feature_epochs": 1, "factor": 1}
