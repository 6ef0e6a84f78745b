"""The AVDD evaluation protocol: train fresh networks on a (synthetic or real) training set,
report final-epoch top-1 accuracy on a real split (test by default; val to make choices).

Per run: fresh encoders and head trained with the protocol's recipe (:mod:`avdistill.training`:
seeded networks, Adam, 30 epochs, batch 32, lr x0.1 after epochs 10 and 20, DSA applied to each
modality independently with per-sample parameters; or, with ``steps``, a fixed number of
optimiser steps whatever the set's size). N runs -> mean ± std.

The head decides which encoders take part (``head.modalities``): an audio-only or visual-only
head never runs the other encoder, and that encoder is neither optimised nor returned.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from avdistill.config import option, validate
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.seeding import derive_seed
from avdistill.spread import mean_std
from avdistill.training import TrainConfig, batches, train_networks


EVAL_SPLITS = ("val", "test")


@dataclass
class EvalConfig(TrainConfig):
    test_batch: int = option(512, "batch size when scoring the test split", minimum=1)
    on: str = option("test", "real split the accuracy is measured on: 'val' to make choices, 'test' for final "
                             "numbers", choices=EVAL_SPLITS, what="split")


@dataclass
class EvalResult:
    """Accuracies of the runs; `branches`: for a head with branches (the ensemble), each branch's accuracy
    alone per run ({"a": [...], "v": [...]}), i.e. the audio-only and visual-only heads' (see EnsembleHead)."""

    accuracies: list[float]
    config: dict = field(default_factory=dict)
    branches: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def __str__(self) -> str:
        return mean_std(self.accuracies)


def train_and_test(train, dataset: AVDataset, cfg: EvalConfig, seed: int, device: str = "cpu",
                   progress: bool = False) -> dict[str, float]:
    """One run: train fresh networks on `train`; top-1 accuracies on the real split `cfg.on` (see test_accuracies)."""
    f_audio, f_visual, head = train_networks(train, dataset, cfg, seed, device, progress)
    return test_accuracies(f_audio, f_visual, head, dataset, cfg.test_batch, device, cfg.on)


@torch.no_grad()
def test_accuracies(f_audio, f_visual, head, dataset: AVDataset, batch_size: int, device: str = "cpu",
                    on: str = "test") -> dict[str, float]:
    """Top-1 accuracy on the real split `on` ("test" or "val") of the head ("head") and, for a head with
    branches, of each branch alone ("a", "v"); an encoder given as None is not run."""
    networks = [net for net in (f_audio, f_visual, head) if net is not None]
    for net in networks:
        net.eval()
    split = dataset.split(on)
    batch, _ = batches(split, dataset, device)
    correct = {"head": 0, **{b: 0 for b in getattr(head, "branches", ())}}
    for idx in torch.arange(len(split)).split(batch_size):
        audio, frames, labels = batch(idx)
        outputs = head(f_audio(audio) if f_audio is not None else None,
                       f_visual(frames) if f_visual is not None else None)
        probs = {"head": head.predict(outputs), **(head.branch_predict(outputs) if len(correct) > 1 else {})}
        for name, p in probs.items():
            correct[name] += int((p.argmax(1) == labels).sum())
    return {name: n / len(split) for name, n in correct.items()}


def test_accuracy(f_audio, f_visual, head, dataset: AVDataset, batch_size: int, device: str = "cpu",
                  on: str = "test") -> float:
    """The head's top-1 accuracy on the real split `on`."""
    return test_accuracies(f_audio, f_visual, head, dataset, batch_size, device, on)["head"]


def evaluate_runs(train, dataset: AVDataset, cfg: EvalConfig | None = None, runs: int = 3, seed: int = 0,
                  device: str = "cpu", progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """`runs` independent trainings (seeds derived from `seed`) -> accuracies, mean ± std."""
    cfg = validate(cfg or EvalConfig())
    dataset.split(cfg.on)  # a missing validation split fails before any training
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, got {runs}")
    scores = [train_and_test(train, dataset, cfg, seed=derive_seed(seed, "encoders", 10_000 + r), device=device)
              for r in tqdm(range(runs), desc=desc, disable=not progress, dynamic_ncols=True)]
    branches = {name: [s[name] for s in scores] for name in scores[0] if name != "head"}
    return EvalResult([s["head"] for s in scores], {"runs": runs, "seed": seed, **dataclasses.asdict(cfg)}, branches)
