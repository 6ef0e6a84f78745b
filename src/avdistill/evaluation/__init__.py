"""Evaluation: how well a synthetic set (or a real subset) trains fresh AV networks."""

from __future__ import annotations

import dataclasses

from avdistill.data.dataset import AVDataset
from avdistill.errors import DataError
from avdistill.evaluation.protocol import EvalConfig, EvalResult, evaluate_runs, train_and_test
from avdistill.evaluation.retrieval import RetrievalConfig, RetrievalResult, retrieval_metrics, retrieval_runs
from avdistill.synthetic import SyntheticSet


def check_compatible(syn: SyntheticSet, dataset: AVDataset, where: str = "synthetic set") -> None:
    """A synthetic set can only be evaluated on the dataset layout it was distilled from."""
    prep = dataset.preprocessing
    if tuple(syn.audio.shape[1:]) != prep.audio_shape or tuple(syn.frames.shape[1:]) != prep.frame_shape:
        raise DataError(where, f"its samples (audio {tuple(syn.audio.shape[1:])}, frames {tuple(syn.frames.shape[1:])}) "
                               f"do not match dataset {dataset.name} (audio {prep.audio_shape}, frames {prep.frame_shape})")
    if len(syn.classes) != dataset.num_classes or int(syn.labels.max()) >= dataset.num_classes:
        raise DataError(where, f"it has {len(syn.classes)} classes, dataset {dataset.name} has {dataset.num_classes}")


def _on(config: EvalConfig | None, on: str | None) -> EvalConfig:
    """`config` (default: the AVDD protocol) measured on the split `on` when given."""
    config = config or EvalConfig()
    return config if on is None else dataclasses.replace(config, on=on)


def evaluate(syn: SyntheticSet, dataset: AVDataset, runs: int = 3, seed: int = 0, config: EvalConfig | None = None,
             device: str = "cpu", progress: bool = True, on: str | None = None) -> EvalResult:
    """Train `runs` fresh AV classifiers on `syn`; accuracy on `dataset`'s real split `on`.

    `on`: "test" (final numbers) or "val" (to make choices); None: ``config.on``, by default "test".
    """
    check_compatible(syn, dataset, syn.path or "synthetic set")
    return evaluate_runs(syn.training_pairs(), dataset, _on(config, on), runs, seed, device, progress)


def evaluate_whole_data(dataset: AVDataset, runs: int = 3, seed: int = 0, config: EvalConfig | None = None,
                        device: str = "cpu", progress: bool = True, on: str | None = None) -> EvalResult:
    """Upper bound: the same protocol on the full real training split (validation pairs excluded)."""
    return evaluate_runs(dataset.train, dataset, _on(config, on), runs, seed, device, progress, desc="whole data")


def evaluate_retrieval(syn: SyntheticSet | None, dataset: AVDataset, runs: int = 3, seed: int = 0,
                       config: EvalConfig | None = None, retrieval_config: RetrievalConfig | None = None,
                       device: str = "cpu", progress: bool = True, on: str | None = None) -> RetrievalResult:
    """Cross-modal retrieval after contrastive training on `syn` (None: the whole real training split)."""
    config = _on(config, on)
    if syn is None:
        return retrieval_runs(dataset.train, dataset, config, retrieval_config, runs, seed, device, progress,
                              desc="retrieval, whole data")
    check_compatible(syn, dataset, syn.path or "synthetic set")
    return retrieval_runs(syn.training_pairs(), dataset, config, retrieval_config, runs, seed, device, progress)


__all__ = ["EvalConfig", "EvalResult", "RetrievalConfig", "RetrievalResult", "evaluate", "evaluate_whole_data",
           "evaluate_retrieval", "retrieval_metrics", "train_and_test", "check_compatible"]
