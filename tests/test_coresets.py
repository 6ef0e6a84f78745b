"""Herding and k-center: the greedy rules on known points, and the methods end to end."""

from __future__ import annotations

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError
from avdistill.methods.coreset import train_features
from avdistill.methods.coreset import herd, herding_indices
from avdistill.methods.initial_set import initial_synthetic, pick_real
from avdistill.factor import pack
from avdistill.methods.kcenter import k_center
from avdistill.synthetic import load_synthetic

FAST = {"feature_epochs": 2}


def test_herding_picks_keep_the_running_mean_closest_to_the_class_mean():
    points = torch.tensor([[0.0], [10.0], [4.0], [7.0], [5.5], [1.0]])  # mean 4.583
    order = herd(points, 4).tolist()
    assert order[0] == 2  # 4.0 is nearest the mean
    assert order[1] == 4  # (4 + 5.5) / 2 = 4.75 beats every other pair mean
    assert len(set(order)) == 4
    mean = points.mean()
    for k in range(1, 5):  # no other k-subset extending the first k-1 picks gets closer
        chosen = points[order[:k]].sum()
        best = min(abs(mean - (points[order[:k - 1]].sum() + points[i]) / k).item()
                   for i in range(len(points)) if i not in order[:k - 1])
        assert abs(mean - chosen / k).item() == pytest.approx(best)


def test_k_center_starts_at_the_mean_then_takes_the_farthest_point():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])  # mean (3.25, 0)
    assert k_center(points, 3).tolist() == [2, 3, 0]


@pytest.mark.parametrize("method", ["herding", "kcenter"])
def test_coresets_pick_distinct_real_pairs_of_each_class(tiny_dataset_file, tmp_path, method):
    syn = avdistill.distill(tiny_dataset_file, method, ipc=3, seed=0, out=tmp_path, progress=False, **FAST)
    real_audio, real_frames, real_labels = tiny_dataset_file.model_inputs(tiny_dataset_file.train)
    matches = [int(torch.nonzero((real_frames == f).flatten(1).all(1)).flatten()[0]) for f in syn.frames]
    assert len(set(matches)) == len(matches) == 12
    assert real_labels[matches].tolist() == syn.labels.tolist() == [c for c in range(4) for _ in range(3)]
    assert torch.equal(real_audio[matches], syn.audio)
    loaded = load_synthetic(tmp_path / "synthetic.safetensors")
    assert loaded.meta["method"] == method and loaded.meta["config"]["space"] == "av" and loaded.factor == 1
    again = avdistill.distill(tiny_dataset_file, method, ipc=3, seed=0, progress=False, **FAST)
    assert torch.equal(again.frames, syn.frames)


def test_feature_spaces_and_seeds_change_the_ranking(tiny_dataset_file):
    picks = {space: herding_indices(tiny_dataset_file, 4, space, "small", 2, seed=0) for space in ("av", "audio", "visual")}
    assert len({tuple(p.tolist()) for p in picks.values()}) > 1
    av = train_features(tiny_dataset_file, "av", epochs=2, seed=0)
    assert av.shape == (48, 1024) and torch.allclose(av.norm(dim=1), torch.full((48,), 2 ** 0.5))
    assert not torch.equal(av, train_features(tiny_dataset_file, "av", epochs=2, seed=1))
    with pytest.raises(ConfigError, match="--space must be one of"):
        avdistill.distill(tiny_dataset_file, "herding", ipc=1, space="text", progress=False, **FAST)
    with pytest.raises(ConfigError, match="fewer than ipc=13"):
        avdistill.distill(tiny_dataset_file, "kcenter", ipc=13, progress=False, **FAST)


def test_herding_init_with_factor_packs_the_herded_pairs(tiny_dataset_file):
    from avdistill.methods.initial_set import HerdingInit

    audio, frames, labels = initial_synthetic(tiny_dataset_file, 2, "herding", seed=0, factor=2,
                                              herding=HerdingInit(herding_epochs=2))
    picks = herding_indices(tiny_dataset_file, 8, "av", "small", 2, seed=0)
    _, real_frames, _ = tiny_dataset_file.model_inputs(tiny_dataset_file.train.subset(picks))
    assert torch.equal(frames, pack(real_frames, 2)) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_herding_and_random_with_factor_pack_their_picks_without_optimising(tiny_dataset_file):
    """herding --factor 2 = AVDD's herding initialisation, unoptimised: per class, the 4·IPC pairs
    picked by herd() on the class's features, packed 4 to a stored pair, in pick order."""
    features = train_features(tiny_dataset_file, "av", epochs=2, seed=0)
    classes = tiny_dataset_file.train.class_indices(4)
    picks = torch.cat([idx[herd(features[idx], 8)] for idx in classes])  # by hand, class by class
    _, real_frames, _ = tiny_dataset_file.model_inputs(tiny_dataset_file.train.subset(picks))
    herded = avdistill.distill(tiny_dataset_file, "herding", ipc=2, seed=0, factor=2, progress=False, **FAST)
    assert herded.factor == 2 and herded.frames.shape[0] == 8 and torch.equal(herded.frames, pack(real_frames, 2))
    audio, frames, labels = herded.training_pairs()
    assert len(labels) == 32 and labels.tolist() == [c for c in range(4) for _ in range(8)]
    plain = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=0, progress=False)
    packed = avdistill.distill(tiny_dataset_file, "random", ipc=2, seed=0, factor=2, progress=False)
    assert packed.factor == 2 and packed.meta["config"]["factor"] == 2 and plain.factor == 1
    init_audio, init_frames, _ = initial_synthetic(tiny_dataset_file, 2, "real", seed=0, factor=2)
    assert torch.equal(packed.frames, init_frames) and torch.equal(packed.audio, init_audio)
    picks = pick_real(tiny_dataset_file, 8, seed=0)  # 8 random pairs per class, 4 per stored pair
    _, real_frames, real_labels = tiny_dataset_file.model_inputs(tiny_dataset_file.train.subset(picks))
    assert len(set(picks.tolist())) == 32 and real_labels.view(8, 4).eq(packed.labels.view(8, 1)).all()
