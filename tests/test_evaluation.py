"""The AVDD evaluation protocol: N numbers, deterministic under a seed, clear errors."""

from __future__ import annotations

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError, DataError
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.models.heads import EnsembleHead

FAST = EvalConfig(epochs=3, batch_size=8)


def test_evaluate_returns_n_accuracies_and_is_seed_deterministic(tiny_dataset_file):
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=3, seed=0, progress=False)
    a = evaluate(syn, tiny_dataset_file, runs=3, seed=7, config=FAST, progress=False)
    b = evaluate(syn, tiny_dataset_file, runs=3, seed=7, config=FAST, progress=False)
    assert len(a.accuracies) == 3 and all(0.0 <= x <= 1.0 for x in a.accuracies)
    assert a.accuracies == b.accuracies
    assert a.mean == pytest.approx(sum(a.accuracies) / 3)
    # Accuracies are multiples of 1 / (test size).
    n_test = len(tiny_dataset_file.test)
    assert all(abs(x * n_test - round(x * n_test)) < 1e-9 for x in a.accuracies)


def test_whole_data_learns_the_easy_tiny_task(tiny_dataset_file):
    result = evaluate_whole_data(tiny_dataset_file, runs=1, config=EvalConfig(epochs=5, batch_size=8), progress=False)
    assert result.accuracies[0] > 0.5  # chance is 0.25


def test_ensemble_head_averages_softmaxes_and_sums_losses():
    head = EnsembleHead(4, 6, 3)
    fa, fv, y = torch.randn(5, 4), torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    la, lv = head(fa, fv)
    assert la.shape == lv.shape == (5, 3)
    probs = head.predict((la, lv))
    assert torch.allclose(probs.sum(1), torch.ones(5))
    assert torch.allclose(probs, (la.softmax(1) + lv.softmax(1)) / 2)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(head.loss((la, lv), y), ce(la, y) + ce(lv, y))


def test_mismatched_synthetic_set_is_refused(tiny_dataset_file):
    from conftest import make_dataset

    other = make_dataset(num_classes=4)
    syn = avdistill.distill(other, "random", ipc=1, progress=False)
    syn.audio = syn.audio[:, :, :8]
    with pytest.raises(DataError, match="do not match"):
        evaluate(syn, tiny_dataset_file, runs=1, config=FAST, progress=False)


def test_bad_eval_options(tiny_dataset_file):
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=1, progress=False)
    with pytest.raises(ConfigError, match="runs must be"):
        evaluate(syn, tiny_dataset_file, runs=0, config=FAST, progress=False)
    with pytest.raises(ConfigError, match="unknown head"):
        evaluate(syn, tiny_dataset_file, runs=1, config=EvalConfig(head="late"), progress=False)


@pytest.mark.parametrize("preset", ["small-deep", "small-wide", "small-bn", "small-nonorm", "resnet"])
def test_cross_architecture_presets_evaluate_a_set(tiny_dataset_file, preset):
    from avdistill.models import PRESETS, get_encoders

    prep = tiny_dataset_file.preprocessing
    audio, visual = get_encoders(preset, prep.audio_shape, prep.frame_shape, generator_seed=1)
    again, _ = get_encoders(preset, prep.audio_shape, prep.frame_shape, generator_seed=1)
    assert all(torch.equal(p, q) for p, q in zip(audio.parameters(), again.parameters()))
    x = torch.randn(3, *prep.audio_shape)
    assert audio(x).shape == (3, audio.embed_dim) and visual(torch.randn(3, *prep.frame_shape)).shape == (3, visual.embed_dim)
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=0, progress=False)
    result = evaluate(syn, tiny_dataset_file, runs=1, config=EvalConfig(epochs=1, batch_size=8, encoder=preset),
                      progress=False)
    assert 0.0 <= result.accuracies[0] <= 1.0 and result.config["encoder"] == preset
    assert preset in PRESETS and PRESETS[preset].summary


def test_resnet_probe_leaves_batch_norm_statistics_untouched():
    from avdistill.models import ResNet, ResNetConfig

    net = ResNet(1, (16, 16), ResNetConfig(width=4))
    stem_norm = net.features[1]
    assert torch.equal(stem_norm.running_mean, torch.zeros(4)) and torch.equal(stem_norm.running_var, torch.ones(4))
    assert net.training and net.embed_dim == 16 * 2 * 2


def test_evaluate_cli_heads_arch_retrieval_csv(tiny_dataset_file, tmp_path, capsys):
    import csv
    import json

    from avdistill.cli import main

    data = tiny_dataset_file.source_path
    assert main(["distill", "--data", data, "--method", "random", "--ipc", "2", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    args = ["evaluate", str(tmp_path / "r" / "synthetic.safetensors"), "--data", data, "--runs", "2", "--epochs", "1",
            "--heads", "a,v,concat,sum,attention,ensemble", "--arch", "small,resnet", "--retrieval",
            "--whole-data", "--whole-data-runs", "1", "--csv", str(tmp_path / "e.csv"),
            "--json", str(tmp_path / "e.json"), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for text in ("resnet / attention", "small / audio-only", "A→V R@1", "V→A MedR", "random IPC 2", "Whole data"):
        assert text in printed
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    accuracy = [r for r in rows if r["kind"] == "accuracy"]
    assert len(accuracy) == 2 * 6 * (2 + 1)  # archs x heads x (2 runs on the set + 1 whole-data run)
    assert {r["metric"] for r in rows if r["kind"] == "retrieval"} >= {"a2v R@1", "v2a median_rank"}
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["retrieval_config"]["match"] == "class" and report["whole_data_runs"] == 1
    assert main(["evaluate", "--whole-data", "--data", data, "--heads", "a,late", "--quiet"]) == 2
    assert "unknown head 'late'" in capsys.readouterr().err
    assert main(["evaluate", "--whole-data", "--data", data, "--arch", "vgg", "--quiet"]) == 2
    assert "unknown encoder preset 'vgg'" in capsys.readouterr().err
