"""The six fusion heads: shapes, probabilities, gradients, and each head's definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig
from avdistill.evaluation.protocol import evaluate_runs
from avdistill.evaluation.protocol import test_accuracies as accuracies_of
from avdistill.evaluation.protocol import test_accuracy as accuracy_of
from avdistill.training import train_networks
from avdistill.models.heads import HEADS, AttentionHead, ConcatHead, SumHead

N, DA, DV, C = 5, 6, 10, 4


def features(audio_dim: int = DA, visual_dim: int = DV):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(N, audio_dim, generator=g, requires_grad=True),
            torch.randn(N, visual_dim, generator=g, requires_grad=True), torch.tensor([0, 1, 2, 3, 0]))


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_shapes_probabilities_and_gradients(name):
    torch.manual_seed(0)
    head = HEADS[name](DA, DV, C)
    f_audio, f_visual, labels = features()
    uses_audio, uses_visual = "audio" in head.modalities, "visual" in head.modalities
    outputs = head(f_audio if uses_audio else None, f_visual if uses_visual else None)
    probs = head.predict(outputs)
    logits = outputs[0] if name == "attention" else outputs  # attention also returns its modality weights
    expected = (logits[0].softmax(1) + logits[1].softmax(1)) / 2 if name == "ensemble" else logits.softmax(1)
    assert probs.shape == (N, C) and torch.allclose(probs, expected)
    assert torch.allclose(probs.sum(1), torch.ones(N))
    loss = head.loss(outputs, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    assert (f_audio.grad is not None and f_audio.grad.abs().sum() > 0) == uses_audio
    assert (f_visual.grad is not None and f_visual.grad.abs().sum() > 0) == uses_visual


def test_concat_is_one_linear_layer_on_the_joined_features():
    head = ConcatHead(DA, DV, C)
    f_audio, f_visual, _ = features()
    expected = F.linear(torch.cat([f_audio, f_visual], 1), head.classifier.weight, head.classifier.bias)
    assert torch.allclose(head(f_audio, f_visual), expected)


def test_sum_adds_equal_size_features_directly_and_projects_otherwise():
    f_audio, f_visual, _ = features(DA, DA)
    head = SumHead(DA, DA, C)
    assert not any("common" in name for name, _ in head.named_parameters())  # no projection needed
    assert torch.allclose(head(f_audio, f_visual), head.classifier(f_audio + f_visual))
    unequal = SumHead(DA, DV, C)
    assert unequal.common.dim == DA and isinstance(unequal.common.audio, torch.nn.Identity)
    assert unequal.common.visual.weight.shape == (DA, DV)
    assert SumHead(DA, DV, C, fusion_dim=3).classifier.in_features == 3


def test_attention_weights_are_a_per_sample_softmax_over_the_modalities():
    torch.manual_seed(0)
    head = AttentionHead(DA, DV, C, attention_hidden=8)
    f_audio, f_visual, _ = features()
    logits, weights = head(f_audio, f_visual)
    assert weights.shape == (N, 2) and torch.allclose(weights.sum(1), torch.ones(N))
    assert not torch.allclose(weights[0], weights[1])  # per sample, not one global weighting
    h_audio, h_visual = head.common(f_audio, f_visual)
    fused = weights[:, :1] * h_audio + weights[:, 1:] * h_visual
    assert torch.allclose(logits, head.classifier(fused), atol=1e-6)
    assert AttentionHead(DA, DV, C, attention_hidden=0).score.weight.shape == (1, DA)


def test_bad_head_options_are_config_errors():
    with pytest.raises(ConfigError, match="fusion_dim"):
        SumHead(DA, DV, C, fusion_dim=-1)
    with pytest.raises(ConfigError, match="attention_hidden"):
        AttentionHead(DA, DV, C, attention_hidden=-2)


@pytest.mark.parametrize("head, unused", [("a", 1), ("v", 0)])
def test_single_modality_heads_never_build_an_optimiser_for_or_run_the_other_encoder(tiny_dataset, head, unused):
    cfg = EvalConfig(epochs=1, batch_size=16, head=head)
    networks = train_networks(tiny_dataset.train, tiny_dataset, cfg, seed=0)
    assert networks[unused] is None and networks[1 - unused] is not None
    inputs = tiny_dataset.model_inputs(tiny_dataset.test)  # the accuracy, counted here with the one encoder
    with torch.no_grad():
        embedded = [None, None]
        embedded[1 - unused] = networks[1 - unused](inputs[1 - unused])
        expected = (networks[2].predict(networks[2](*embedded)).argmax(1) == inputs[2]).double().mean().item()
    assert accuracy_of(*networks, tiny_dataset, 7) == pytest.approx(expected)


def test_every_head_trains_deterministically_under_a_seed(tiny_dataset):
    for name in HEADS:
        cfg = EvalConfig(epochs=1, batch_size=16, head=name)
        a = train_networks(tiny_dataset.train, tiny_dataset, cfg, seed=3)[2]
        b = train_networks(tiny_dataset.train, tiny_dataset, cfg, seed=3)[2]
        for (pname, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(pa, pb), f"{name}: {pname} differs between two runs with one seed"


def test_the_ensembles_branches_train_exactly_as_the_single_modality_heads(tiny_dataset):
    """The ensemble's loss is a sum over branches with no shared parameter, and each branch starts from the
    single-modality head's initial weights: so its audio (visual) half *is* the audio-only (visual-only) run,
    and the per-branch accuracies the protocol records are those heads' accuracies, bit for bit."""
    cfg = EvalConfig(epochs=2, batch_size=16, head="ensemble")
    f_audio, f_visual, ensemble = train_networks(tiny_dataset.train, tiny_dataset, cfg, seed=5)
    audio_only = train_networks(tiny_dataset.train, tiny_dataset, EvalConfig(epochs=2, batch_size=16, head="a"), 5)
    visual_only = train_networks(tiny_dataset.train, tiny_dataset, EvalConfig(epochs=2, batch_size=16, head="v"), 5)
    for trained, single in ((f_audio, audio_only[0]), (ensemble.audio, audio_only[2].classifier),
                            (f_visual, visual_only[1]), (ensemble.visual, visual_only[2].classifier)):
        for pa, pb in zip(trained.parameters(), single.parameters(), strict=True):
            assert torch.equal(pa, pb)
    scores = accuracies_of(f_audio, f_visual, ensemble, tiny_dataset, 7)
    assert scores["a"] == accuracy_of(*audio_only, tiny_dataset, 7)
    assert scores["v"] == accuracy_of(*visual_only, tiny_dataset, 7)
    assert scores["head"] == accuracy_of(f_audio, f_visual, ensemble, tiny_dataset, 7)


def test_protocol_records_branch_accuracies_only_for_a_head_with_branches(tiny_dataset):
    ensemble = evaluate_runs(tiny_dataset.train, tiny_dataset, EvalConfig(epochs=1, batch_size=16), runs=2,
                             progress=False)
    audio = evaluate_runs(tiny_dataset.train, tiny_dataset, EvalConfig(epochs=1, batch_size=16, head="a"), runs=2,
                          progress=False)
    assert sorted(ensemble.branches) == ["a", "v"] and len(ensemble.branches["a"]) == 2
    assert ensemble.branches["a"] == audio.accuracies
    assert audio.branches == {}
