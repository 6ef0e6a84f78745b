"""Cross-modal retrieval: metrics on hand-made similarity matrices, the contrastive loss, the protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avdistill
from avdistill.errors import ConfigError
from avdistill.evaluation import EvalConfig, RetrievalConfig, evaluate_retrieval, retrieval_metrics
from avdistill.evaluation.retrieval import ContrastiveHead

FAST = EvalConfig(epochs=2, batch_size=16)


def test_identity_similarity_retrieves_every_partner_first():
    m = retrieval_metrics(torch.eye(4), torch.eye(4, dtype=torch.bool))
    assert m == {"R@1": 1.0, "R@5": 1.0, "median_rank": 1.0}


def test_known_ranks_give_known_recall_and_median():
    # Gallery of 8; the partner (diagonal of `relevant`) is placed at ranks 1, 2, 6 and 3.
    partner_scores = [0.9, 0.8, 0.4, 0.7]
    others = torch.tensor([0.85, 0.75, 0.65, 0.55, 0.5, 0.45, 0.3, 0.2])
    similarity = torch.zeros(4, 8)
    relevant = torch.zeros(4, 8, dtype=torch.bool)
    for q, score in enumerate(partner_scores):
        relevant[q, q] = True
        similarity[q] = others
        similarity[q, q] = score
    # ranks: q0 0.9 beats all -> 1; q1 0.8 behind 0.85 -> 2; q2 0.4 behind 0.85,0.75,0.55,0.5,0.45 -> 6;
    # q3 0.7 behind 0.85, 0.75 -> 3
    m = retrieval_metrics(similarity, relevant)
    assert m["R@1"] == pytest.approx(0.25) and m["R@5"] == pytest.approx(0.75)
    assert m["median_rank"] == pytest.approx(2.5)


def test_class_relevance_counts_the_best_relevant_item_and_ties_count_against():
    similarity = torch.tensor([[0.1, 0.9, 0.5], [0.2, 0.2, 0.2]])
    relevant = torch.tensor([[True, False, True], [False, True, False]])
    # q0: best relevant 0.5, one non-relevant (0.9) above -> rank 2; q1: all tied -> 1 + 2 non-relevant = 3.
    m = retrieval_metrics(similarity, relevant)
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0 and m["median_rank"] == pytest.approx(2.5)


def test_metric_input_errors():
    with pytest.raises(ConfigError, match="matching"):
        retrieval_metrics(torch.zeros(3, 4), torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="at least one relevant"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([[True, False], [False, False]]))


def test_contrastive_loss_is_symmetric_infonce_and_class_positives_reduce_to_pairs_for_distinct_labels():
    torch.manual_seed(0)
    head = ContrastiveHead(6, 10, embed_dim=4, temperature=0.5, positives="class")
    f_audio = torch.randn(5, 6, requires_grad=True)
    f_visual = torch.randn(5, 10, requires_grad=True)
    z_audio, z_visual = head(f_audio, f_visual)
    assert torch.allclose(z_audio.norm(dim=1), torch.ones(5)) and z_visual.shape == (5, 4)
    logits = z_audio @ z_visual.T / 0.5
    target = torch.arange(5)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    assert torch.allclose(head.loss((z_audio, z_visual), torch.arange(5)), clip)
    head.positives = "pair"
    assert torch.allclose(head.loss((z_audio, z_visual), torch.zeros(5, dtype=torch.long)), clip)
    head.positives = "class"
    same = head.loss((z_audio, z_visual), torch.tensor([0, 0, 1, 1, 1]))
    assert not torch.allclose(same, clip)
    same.backward()
    assert f_audio.grad.abs().sum() > 0 and f_visual.grad.abs().sum() > 0


def test_retrieval_protocol_is_deterministic_and_bounded(tiny_dataset_file):
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=3, seed=0, progress=False)
    a = evaluate_retrieval(syn, tiny_dataset_file, runs=2, seed=5, config=FAST, progress=False)
    b = evaluate_retrieval(syn, tiny_dataset_file, runs=2, seed=5, config=FAST, progress=False)
    assert a.runs == b.runs and len(a.runs) == 2
    n_test = len(tiny_dataset_file.test)
    for run in a.runs:
        for direction in ("a2v", "v2a"):
            m = run[direction]
            assert 0.0 <= m["R@1"] <= m["R@5"] <= 1.0 and 1.0 <= m["median_rank"] <= n_test
    whole = evaluate_retrieval(None, tiny_dataset_file, runs=1, config=EvalConfig(epochs=4, batch_size=8),
                               retrieval_config=RetrievalConfig(match="pair", positives="pair"), progress=False)
    assert 1.0 <= whole.mean("a2v", "median_rank") <= n_test


def test_bad_retrieval_options(tiny_dataset_file):
    syn = avdistill.distill(tiny_dataset_file, "random", ipc=1, progress=False)
    with pytest.raises(ConfigError, match="match"):
        evaluate_retrieval(syn, tiny_dataset_file, runs=1, config=FAST,
                           retrieval_config=RetrievalConfig(match="video"), progress=False)
    with pytest.raises(ConfigError, match="temperature"):
        evaluate_retrieval(syn, tiny_dataset_file, runs=1, config=FAST,
                           retrieval_config=RetrievalConfig(temperature=0.0), progress=False)
