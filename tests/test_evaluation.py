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
