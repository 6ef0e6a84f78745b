"""The AVDD evaluation protocol: N numbers, deterministic under a seed, clear errors."""

from __future__ import annotations

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError, DataError
from avdistill.evaluation import EvalConfig, evaluate, evaluate_whole_data
from avdistill.models.heads import EnsembleHead
from torch.optim.optimizer import register_optimizer_step_post_hook

FAST = EvalConfig(epochs=3, batch_size=8)


def test_evaluate_returns_n_accuracies_and_is_seed_deterministic(tiny_dataset_file):
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=3, seed=0, progress=False)
    a = evaluate(syn, tiny_dataset_file, runs=3, seed=7, config=FAST, progress=False)
    b = evaluate(syn, tiny_dataset_file, runs=3, seed=7, config=FAST, progress=False)
    assert len(a.accuracies) == 3 and a.config["on"] == "test"
    assert a.accuracies == b.accuracies
    assert a.mean == pytest.approx(sum(a.accuracies) / 3)
    # Accuracies are multiples of 1 / (test size).
    n_test = len(tiny_dataset_file.test)
    assert all(abs(x * n_test - round(x * n_test)) < 1e-9 for x in a.accuracies)


def test_whole_data_learns_the_easy_tiny_task(tiny_dataset_file):
    result = evaluate_whole_data(tiny_dataset_file, runs=1, config=EvalConfig(epochs=5, batch_size=8), progress=False)
    assert result.accuracies[0] > 0.5  # chance is 0.25


def record_optimiser_steps():
    """(list filled with every optimiser step taken from now on: its type and each parameter group's
    settings, the hook's handle to remove)."""
    steps = []

    def hook(optimizer, args, kwargs):
        steps.append({"type": type(optimizer), "groups": [
            {"params": [id(p) for p in g["params"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
            for g in optimizer.param_groups]})

    return steps, register_optimizer_step_post_hook(hook)


def test_evaluation_optimiser_follows_the_avdd_protocol(tiny_dataset):
    """Adam; groups audio encoder (lr 1e-3), visual encoder (1e-4), head (1e-3); wd 1e-4; x0.1 after epochs 10, 20."""
    from avdistill.training import train_networks

    cfg = EvalConfig()  # the protocol's defaults: 30 epochs, batch 32
    assert (cfg.epochs, cfg.batch_size, cfg.milestones, cfg.steps, cfg.on) == (30, 32, (10, 20), 0, "test")
    steps, handle = record_optimiser_steps()
    try:
        f_audio, f_visual, head = train_networks(tiny_dataset.train, tiny_dataset, cfg, seed=0)
    finally:
        handle.remove()
    per_epoch = -(-len(tiny_dataset.train) // 32)  # 48 pairs: 2 steps per epoch
    assert len(steps) == 30 * per_epoch
    ids = [[id(p) for p in net.parameters()] for net in (f_audio, f_visual, head)]
    for k, step in enumerate(steps):
        assert step["type"] is torch.optim.Adam
        assert [g["params"] for g in step["groups"]] == ids
        assert [g["weight_decay"] for g in step["groups"]] == [1e-4] * 3
        decay = 0.1 ** ((k // per_epoch >= 10) + (k // per_epoch >= 20))  # the lr of epoch k // per_epoch
        assert [g["lr"] for g in step["groups"]] == pytest.approx([1e-3 * decay, 1e-4 * decay, 1e-3 * decay])


@pytest.mark.parametrize("pairs", [8, 48])
def test_fixed_steps_protocol_takes_n_steps_whatever_the_set_size(tiny_dataset, pairs):
    from avdistill.training import milestone_steps, train_networks

    cfg = EvalConfig(steps=25, batch_size=16)
    assert milestone_steps(cfg) == [8, 17]  # epochs 10 and 20 of 30 -> the same fractions of 25 steps
    steps, handle = record_optimiser_steps()
    try:
        train_networks(tiny_dataset.train.subset(torch.arange(pairs)), tiny_dataset, cfg, seed=0)
    finally:
        handle.remove()
    assert len(steps) == 25
    lrs = [step["groups"][0]["lr"] for step in steps]  # the audio encoder's
    assert lrs == pytest.approx([1e-3] * 8 + [1e-4] * 9 + [1e-5] * 8)


def test_accuracy_on_the_validation_split(tiny_dataset_file):
    """on="val" scores the validation split: a dataset whose val split is its test split scores the same."""
    from avdistill.data.dataset import AVDataset

    syn = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=0, progress=False)
    with pytest.raises(DataError, match="has no val split"):  # before any training
        evaluate(syn, tiny_dataset_file, runs=1, config=FAST, progress=False, on="val")
    twin = AVDataset(name="twin", classes=tiny_dataset_file.classes, train=tiny_dataset_file.train,
                     test=tiny_dataset_file.test, val=tiny_dataset_file.test, preprocessing=tiny_dataset_file.preprocessing)
    other = tiny_dataset_file.test.subset(torch.arange(len(tiny_dataset_file.test) - 1, -1, -1)[:7])
    shifted = AVDataset(name="short-val", classes=twin.classes, train=twin.train, test=twin.test, val=other,
                        preprocessing=twin.preprocessing)
    on_test = evaluate(syn, twin, runs=2, config=FAST, progress=False)
    on_val = evaluate(syn, twin, runs=2, config=FAST, progress=False, on="val")
    assert on_val.accuracies == on_test.accuracies and on_val.config["on"] == "val"
    seven = evaluate(syn, shifted, runs=2, config=FAST, progress=False, on="val")
    assert all(float(x * 7).is_integer() for x in seven.accuracies)  # scored on the 7 validation pairs


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
    n_test = len(tiny_dataset_file.test)
    assert result.config["encoder"] == preset and float(result.accuracies[0] * n_test).is_integer()
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
