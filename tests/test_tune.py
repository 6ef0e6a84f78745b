"""avdistill tune: search ranges, the study database (kill -9 and resume, two processes at once), outputs."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from avdistill.cli import main
from avdistill.config import flat_dict, flat_fields
from avdistill.data.storage import load_prepared, save_dataset
from avdistill.errors import ConfigError
from avdistill.methods import METHODS
from avdistill.methods.avdd import AVDDConfig
from avdistill.methods.base import make_config
from avdistill.methods.budgets import BUDGET_NAMES, budget_options
from avdistill.methods.dm import DMConfig
from avdistill.methods.mtt import MTTConfig
from avdistill.searchspace import SearchRange, check_range, declared_space, log_uniform, one_of, parse_space
from conftest import make_dataset, make_split

# A trial on the tiny dataset: a few DM iterations, two short evaluation trainings on the validation split.
TRIAL = ["--method", "dm", "--ipc", "2", "--iterations", "6", "--checkpoint-every", "3", "--real-per-class", "4",
         "--eval", "epochs=2", "--runs", "1", "--quiet"]


def dataset_with_val(seed: int = 0):
    return dataclasses.replace(make_dataset(seed=seed), val=make_split(4, 4, seed + 2))


@pytest.fixture
def data_file(tmp_path) -> str:
    return str(save_dataset(dataset_with_val(), tmp_path / "tiny-val.safetensors"))


def study_trials(out: Path, name: str = "dm-ipc2"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").get_trials()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_declared_ranges_lie_within_the_options_bounds(method):
    config_class = METHODS[method].config_class
    fields = flat_fields(config_class)
    for name, search in declared_space(config_class).items():
        check_range(fields[name][0], search, name)  # raises on a range that reaches outside the bounds


def test_a_method_narrows_or_drops_the_shared_ranges():
    assert declared_space(DMConfig)["lr_audio"] == log_uniform(0.05, 20)
    assert declared_space(AVDDConfig)["lr_audio"] == log_uniform(0.01, 5)  # redefault(..., search=)
    assert declared_space(AVDDConfig)["init"] == one_of("herding", "real")
    assert {"momentum", "factor"} & set(declared_space(MTTConfig)) == set()  # redefault(..., search=None)
    assert "momentum" in declared_space(AVDDConfig)  # inherited unchanged


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_budget_is_a_valid_config_of_its_method(method):
    spec = METHODS[method]
    for budget in BUDGET_NAMES:
        values = budget_options(spec, budget)
        config = flat_dict(make_config(spec, values))  # raises on a budget outside the options' bounds
        assert all(config[name] == value for name, value in values.items())
    if spec.kind == "synthesis":  # every synthesis method has both
        assert budget_options(spec, "cpu")["iterations"] < budget_options(spec, "paper")["iterations"]


def test_space_overrides_parse_and_are_checked_against_bounds():
    assert parse_space("lr_audio=0.1:10:log", DMConfig) == ("lr_audio", SearchRange(0.1, 10.0, log=True))
    assert parse_space("real-per-class=8:64", DMConfig) == ("real_per_class", SearchRange(8, 64))
    assert parse_space("init=real,noise", DMConfig) == ("init", SearchRange(choices=("real", "noise")))
    for text, problem in (("momentum=0:1", "--space momentum.*< 1"), ("lr_audio=0:1:log", "log range"),
                          ("lr_audio=2:1", "below the high end"), ("init=real,fancy", "must be one of"),
                          ("nope=1:2", "NAME one of"), ("lr_audio=a:b", "LOW:HIGH")):
        with pytest.raises(ConfigError, match=problem):
            parse_space(text, DMConfig)


def test_tune_writes_its_outputs_and_a_rerun_adds_no_trial(data_file, tmp_path, capsys):
    out = tmp_path / "tune"
    args = ["tune", "--data", data_file, "--trials", "3", "--out", str(out), *TRIAL]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "budget 'cpu'" in printed and "--on test" in printed  # the next step is printed, not taken
    trials = study_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(len(t.user_attrs["val_accuracies"]) == 1 for t in trials)
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    assert {"lr_audio", "lr_frames", "momentum", "init", "factor", "wall_seconds"} <= set(rows[0])
    best = max(trials, key=lambda t: t.value)
    settings = tomllib.loads((out / "best.toml").read_text())
    assert settings["method"] == "dm" and settings["ipc"] == 2 and settings["iterations"] == 6
    assert all(settings[name] == value for name, value in best.params.items())
    defaults = tomllib.loads((out / "defaults.toml").read_text())  # the baseline at the study's budget
    assert defaults["lr_audio"] == DMConfig().lr_audio and defaults["iterations"] == 6
    assert trials[0].user_attrs["defaults"] and not any(t.user_attrs.get("defaults") for t in trials[1:])
    assert all(trials[0].params[name] == defaults[name] for name in trials[0].params)  # trial 0 ran the defaults
    assert [r["defaults"] for r in rows] == ["yes", "", ""]
    assert "Defaults: trial 0, validation accuracy" in (out / "report.md").read_text()
    for png in ("history.png", "importance.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "history.png" in (out / "report.md").read_text()
    stamp = (out / "trials" / "0000" / "synthetic.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # the study has its 3 trials: nothing runs again
    assert len(study_trials(out)) == 3
    assert (out / "trials" / "0000" / "synthetic.safetensors").stat().st_mtime_ns == stamp
    assert main([*args[:4], "5", *args[5:]]) == 0  # asking for more runs only the new ones
    assert [t.number for t in study_trials(out)] == [0, 1, 2, 3, 4]
    (out / "trials.csv").unlink()
    assert main([*args[:4], "0", *args[5:]]) == 0  # outputs only, from the database
    assert len(list(csv.DictReader(open(out / "trials.csv")))) == 5


def test_tune_never_reads_the_test_split(tmp_path):
    from avdistill.tuning import TuneSetup, open_study, run_study, storage_url

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"tune read the test split ({name})")

        def __len__(self):
            raise AssertionError("tune read the test split (len)")

    dataset = dataset_with_val()
    dataset.test = Untouchable()
    setup = TuneSetup(method="dm", ipc=2, trials=2, fixed={"iterations": 6, "checkpoint_every": 3,
                                                           "real_per_class": 4}, runs=1)
    setup.eval_config = dataclasses.replace(setup.eval_config, epochs=2, on="val")
    study = open_study(setup, dataset, storage_url(None, tmp_path), "no-test")
    run_study(study, setup, dataset, tmp_path, progress=False)
    assert len([t for t in study.get_trials() if t.state.name == "COMPLETE"]) == 2


def test_a_study_refuses_another_search(data_file, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--data", data_file, "--trials", "1", "--out", str(out), *TRIAL]) == 0
    assert main(["tune", "--data", data_file, "--trials", "1", "--out", str(out), *TRIAL, "--space",
                 "momentum=0:0.5"]) == 2
    assert "searches something else (differs in: space)" in capsys.readouterr().err


def _tune_process(data_file: str, out: Path, trials: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "avdistill", "tune", "--data", data_file, "--trials", str(trials),
                             "--out", str(out), *TRIAL, *extra], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_repeats_no_finished_trial(data_file, tmp_path):
    out = tmp_path / "tune"
    slow = ["--iterations", "60", "--checkpoint-every", "30", "--heartbeat", "1"]  # trial 1 is long enough to kill
    proc = _tune_process(data_file, out, 3, *slow)
    first = out / "trials" / "0000" / "synthetic.safetensors"
    while not (out / "trials" / "0001").exists():  # trial 0 finished, trial 1 started
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = study_trials(out)
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    stamp = first.stat().st_mtime_ns
    time.sleep(3.5)  # the killed trial's heartbeat goes stale (3 heartbeats of 1 s)
    resumed = _tune_process(data_file, out, 3, *slow)
    assert resumed.wait(timeout=600) == 0, resumed.communicate()
    after = study_trials(out)
    assert after[0].params == before[0].params and after[0].value == before[0].value
    assert first.stat().st_mtime_ns == stamp  # the finished trial was not run again
    assert after[1].state.name == "FAIL"
    complete = [t for t in after if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    assert [t.params for t in complete].count(before[0].params) == 1
    assert before[1].params in [t.params for t in complete]  # the killed trial's settings ran again


def test_two_processes_work_on_one_study(data_file, tmp_path):
    out = tmp_path / "tune"
    procs = [_tune_process(data_file, out, 6) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.communicate()
    trials = study_trials(out)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # finished, none failed or left running
    assert 6 <= len(trials) <= 7  # each process stops once 6 are finished; one may have started a 7th
    assert len({t.user_attrs["process"] for t in trials}) == 2  # both processes ran trials
    assert len({t.user_attrs["synthetic"] for t in trials}) == len(trials)
    assert load_prepared(data_file).checksum  # the shared input is intact
