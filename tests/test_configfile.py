"""--config: TOML files and a run's synthetic.json for distill, evaluate, bench and tune; flags override."""

from __future__ import annotations

import json

import pytest
import torch

from avdistill.cli import main
from avdistill.synthetic import load_synthetic

DISTILL = ["--method", "dm", "--ipc", "2", "--iterations", "4", "--checkpoint-every", "2", "--real-per-class", "4",
           "--quiet"]


def test_toml_sets_the_options_and_flags_override_it(tiny_dataset_file, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'method = "avdd"\ndata = "{tiny_dataset_file.source_path}"\nipc = 2\niterations = 3\n'
                      'real-per-class = 4\nlam_jm = 2.5\nherding_epochs = 1\nquiet = true\n')
    assert main(["distill", "--config", str(config), "--iterations", "2", "--out", str(tmp_path / "run")]) == 0
    meta = load_synthetic(tmp_path / "run" / "synthetic.safetensors").meta
    assert meta["method"] == "avdd" and meta["ipc"] == 2
    assert meta["config"]["iterations"] == 2  # the flag wins
    assert meta["config"]["lam_jm"] == 2.5 and meta["config"]["real_per_class"] == 4  # the file's


def test_rerunning_a_synthetic_json_is_bit_identical(tiny_dataset_file, tmp_path, capsys):
    data = tiny_dataset_file.source_path
    assert main(["distill", "--data", data, *DISTILL, "--seed", "3", "--lr-audio", "0.7", "--out",
                 str(tmp_path / "first")]) == 0
    assert main(["distill", "--config", str(tmp_path / "first" / "synthetic.json"), "--out",
                 str(tmp_path / "again"), "--quiet"]) == 0
    first, again = (load_synthetic(tmp_path / name / "synthetic.safetensors") for name in ("first", "again"))
    assert torch.equal(first.audio, again.audio) and torch.equal(first.frames, again.frames)
    assert again.meta["config"] == first.meta["config"] and again.meta["seed"] == 3


def test_a_run_stopped_by_its_time_budget_records_it_and_reruns_to_the_same_point(tiny_dataset_file, tmp_path):
    data = tiny_dataset_file.source_path
    stopped = tmp_path / "stopped"
    # a limit no checkpoint can meet: the run stops at its first checkpoint (iteration 2 of 4)
    assert main(["distill", "--data", data, *DISTILL, "--time-budget", "0.000001s", "--out", str(stopped)]) == 0
    syn = load_synthetic(stopped / "synthetic.safetensors")
    assert syn.meta["stopped"] == {"reason": "time budget", "time_budget_seconds": 1e-06, "iterations_done": 2}
    assert (stopped / "checkpoint.safetensors").exists()  # kept, so the run can be continued
    assert main(["distill", "--config", str(stopped / "synthetic.json"), "--out", str(tmp_path / "rerun")]) == 0
    rerun = load_synthetic(tmp_path / "rerun" / "synthetic.safetensors")
    assert rerun.meta["config"]["iterations"] == 2 and "stopped" not in rerun.meta
    assert torch.equal(rerun.audio, syn.audio) and torch.equal(rerun.frames, syn.frames)
    # the same --out without a limit continues from the checkpoint, as if never stopped
    assert main(["distill", "--data", data, *DISTILL, "--out", str(stopped)]) == 0
    assert main(["distill", "--data", data, *DISTILL, "--out", str(tmp_path / "whole")]) == 0
    continued, whole = (load_synthetic(p / "synthetic.safetensors") for p in (stopped, tmp_path / "whole"))
    assert torch.equal(continued.audio, whole.audio) and torch.equal(continued.frames, whole.frames)


def test_the_budget_is_printed_and_the_expected_wall_time_after_the_first_iterations(tiny_dataset_file, tmp_path,
                                                                                     capsys):
    data = tiny_dataset_file.source_path
    assert main(["distill", "--data", data, "--method", "avdd", "--ipc", "1", "--iterations", "7",
                 "--real-per-class", "4", "--herding-epochs", "1", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "avdd: budget 'cpu' (the default on cpu): iterations 100" in captured.out
    assert "expected wall time:" in captured.err and "7 iterations" in captured.err
    assert load_synthetic(tmp_path / "a" / "synthetic.safetensors").meta["budget"] == "cpu"
    assert main(["distill", "--data", data, "--method", "avdd", "--ipc", "1", "--budget", "paper", "--iterations", "1",
                 "--real-per-class", "4", "--herding-epochs", "1", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "budget 'paper' (--budget): iterations 5000, real-per-class 128" in capsys.readouterr().out


@pytest.mark.parametrize("line, problem", [
    ("iteratons = 3", "unknown key(s) 'iteratons' for avdistill distill --method dm"),
    ('iterations = "ten"', "key 'iterations' must be int"),
    ("iterations = 0", "key 'iterations': --iterations must be >= 1, got 0"),
    ("ipc = 1.5", "key 'ipc' must be an integer"),
    ('method = "nope"', "key 'method' must be one of"),
    ("[dm]\niterations = 3", "key 'dm': tables are not options"),
    ("iterations = ", "not valid TOML"),
])
def test_bad_config_files_fail_in_one_line_naming_key_and_file(tiny_dataset_file, tmp_path, capsys, line, problem):
    config = tmp_path / "bad.toml"
    config.write_text(line + "\n")
    out = tmp_path / "never"
    assert main(["distill", "--data", tiny_dataset_file.source_path, "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and problem in err
    assert not out.exists()


def test_evaluate_bench_and_tune_read_config_files(tiny_dataset_file, tmp_path, capsys):
    data = tiny_dataset_file.source_path
    assert main(["distill", "--data", data, *DISTILL, "--out", str(tmp_path / "dm")]) == 0
    config = tmp_path / "eval.toml"
    config.write_text(f'synthetic = ["{tmp_path / "dm" / "synthetic.safetensors"}"]\ndata = "{data}"\nruns = 2\n'
                      f'epochs = 1\nheads = ["a", "v"]\njson = "{tmp_path / "eval.json"}"\nquiet = true\n')
    assert main(["evaluate", "--config", str(config), "--runs", "1"]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [r["settings"]["eval"]["head"] for r in report["results"]] == ["a", "v"] and report["runs"] == 1
    assert report["eval_config"]["epochs"] == 1
    config.write_text("epochs = 0\n")
    assert main(["evaluate", "--config", str(config)]) == 2
    assert f"{config}: key 'epochs': --epochs must be >= 1" in capsys.readouterr().err
    config.write_text('methodz = "dm"\n')
    assert main(["bench", "--config", str(config)]) == 2
    assert "unknown key(s) 'methodz' for avdistill bench" in capsys.readouterr().err
    config.write_text("trials = 1\nlr_audio = -1.0\n")
    assert main(["tune", "--data", data, "--config", str(config)]) == 2
    assert f"{config}: key 'lr_audio': --lr-audio must be > 0" in capsys.readouterr().err


def test_a_synthetic_json_names_the_data_it_was_made_from(tiny_dataset_file, tmp_path, capsys):
    from conftest import make_dataset
    from avdistill.data.storage import save_dataset

    assert main(["distill", "--data", tiny_dataset_file.source_path, *DISTILL, "--out", str(tmp_path / "dm")]) == 0
    other = save_dataset(make_dataset(seed=5), tmp_path / "other.safetensors")
    assert main(["distill", "--config", str(tmp_path / "dm" / "synthetic.json"), "--data", str(other),
                 "--out", str(tmp_path / "x")]) == 2
    assert "cannot be rerun exactly" in capsys.readouterr().err
