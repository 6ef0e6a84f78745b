"""MTT: Dataset Distillation by Matching Training Trajectories (Cazenavette et al., CVPR'22), for AV pairs.

1. Experts (:mod:`avdistill.methods.trajectories`): ``num_experts`` AV networks (both encoders +
   fusion head) trained on the real training split with plain SGD and DSA; their parameters
   after every epoch are cached on disk and reused by every run with the same data and settings.
2. Every iteration: pick an expert and a start epoch t uniformly in [0, max_start_epoch); the
   student starts at θ_expert(t) and takes ``syn_steps`` (N) SGD steps with the learnable step
   size α on minibatches of the synthetic set (``batch_syn`` pairs, DSA per sample and modality),
   through ``torch.func.functional_call`` so every step stays differentiable;
3. loss = ||θ_student(N) − θ_expert(t + M)||² / ||θ_expert(t) − θ_expert(t + M)||², M =
   ``expert_epochs``, over the parameters of both encoders and the head;
4. one step of the shared loop (SGD, momentum 0.5, as MTT) on the synthetic spectrograms, the
   frames and α (α registered with the loop as an extra learnable tensor, with its own lr).

Decisions: α is one raw scalar (not log-parametrised), initialised to the experts' lr, as in
MTT's code. Experts' seeds come from ``expert_seed``, not from the run seed, so the runs of a
benchmark share one expert bank. Initialisation is the shared one (random real pairs by
default); the IDM factor is supported (the synthetic set is expanded before every student
step's minibatch is drawn) but off by default, as in MTT. Defaults are a CPU budget for
AV-Digits with the ``small`` encoders; MTT's CIFAR-10 settings (50 expert epochs, N = 30–50,
M = 2, max start 20, lr_img 1000, lr_lr 1e-5, lr_teacher 0.01) are kept where they transfer
(M, lr_lr, the experts' lr, lr 1000 on the synthetic tensors; docs/MTT.md has the sweep on the
validation split of av-digits-hard, benchmarks/mtt_sweep.py, that checks them) and scaled down where they cost CPU time (experts, epochs, N). The
student takes minibatches of 32 synthetic pairs: memory and time grow linearly in N x batch
(docs/MTT.md has the figures), so ``--batch-syn`` and ``--syn-steps`` are the memory knobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import functional_call

from avdistill.augment import DEFAULT_STRATEGY, DSA
from avdistill.config import nested, option, redefault
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.factor import expand, expand_labels
from avdistill.methods.base import RunContext, register_method
from avdistill.methods.loop import optimise_synthetic
from avdistill.methods.synthesis import SynthesisConfig, starting_set
from avdistill.methods.trajectories import AVNetwork, ExpertTraining, ParameterLayout, build_network, expert_trajectories
from avdistill.models.heads import HEADS
from avdistill.searchspace import SearchRange, log_uniform
from avdistill.seeding import derive_seed, generator


@dataclass
class MTTConfig(SynthesisConfig):
    iterations: int = redefault(SynthesisConfig, "iterations", 100, "MTT: 5000; a CPU budget here")
    lr_audio: float = redefault(SynthesisConfig, "lr_audio", 1000.0, "MTT CIFAR-10: 1000",
                                search=log_uniform(30, 30000))
    lr_frames: float = redefault(SynthesisConfig, "lr_frames", 1000.0, "MTT CIFAR-10: 1000",
                                 search=log_uniform(30, 30000))
    momentum: float = redefault(SynthesisConfig, "momentum", 0.5, "MTT: 0.5, also on the learnt step size",
                                search=None)
    init: str = redefault(SynthesisConfig, "init", "real", "MTT: real")
    factor: int = redefault(SynthesisConfig, "factor", 1, "off, as MTT", search=None)
    encoder: str = redefault(SynthesisConfig, "encoder", "small", "of the experts and the student; no batch norm")
    augment: str = redefault(SynthesisConfig, "augment", DEFAULT_STRATEGY, "experts and student")
    syn_steps: int = option(10, "N: student steps on synthetic data per iteration (MTT: 30-50)", minimum=1,
                            search=SearchRange(5, 20))
    expert_epochs: int = option(2, "M: the student is matched to the expert M epochs after its start (MTT: 2)",
                                minimum=1)
    max_start_epoch: int = option(4, "start epochs are drawn uniformly from [0, this) (MTT: 20)", minimum=1)
    batch_syn: int = option(32, "synthetic pairs per student step (0: the whole synthetic set; MTT: all, or fewer at "
                                "large IPC)")
    lr_lr: float = option(1e-5, "SGD learning rate on the learnable student step size (MTT: 1e-5)", minimum=0,
                          search=log_uniform(1e-7, 1e-3))
    syn_lr_init: float = option(0.01, "initial student step size (MTT: the experts' lr)", above=0,
                                search=log_uniform(1e-3, 0.1))
    num_experts: int = option(5, "expert trajectories trained on the real training split (MTT: 100)", minimum=1)
    experts: ExpertTraining = nested(ExpertTraining)
    expert_dir: str = option("", "expert cache folder (default: $XDG_CACHE_HOME/avdistill/mtt-experts or "
                                 "~/.cache/...)")
    head: str = option("ensemble", "fusion head of the experts and the student: concat, sum, attention or ensemble",
                       choices=tuple(HEADS), what="head")


# MTT's CIFAR-10 budget, and the CPU one (the defaults above): MTT's validation accuracy on av-digits-hard is
# flat from 50 to 200 iterations (benchmarks/budget.py, docs/TUNING.md); 100 lies on that plateau.
BUDGETS = {"paper": {"iterations": 5000, "syn_steps": 30, "max_start_epoch": 20, "num_experts": 100,
                     "expert_train_epochs": 50},
           "cpu": {"iterations": 100, "syn_steps": 10, "max_start_epoch": 4, "num_experts": 5, "expert_train_epochs": 8}}


def check_epochs(cfg: MTTConfig) -> None:
    if cfg.max_start_epoch + cfg.expert_epochs > cfg.experts.expert_train_epochs:
        raise ConfigError(f"--max-start-epoch {cfg.max_start_epoch} + --expert-epochs {cfg.expert_epochs} needs "
                          f"experts trained for at least {cfg.max_start_epoch + cfg.expert_epochs} epochs, "
                          f"but --expert-train-epochs is {cfg.experts.expert_train_epochs}")


class TrajectoryMatcher:
    """One MTT iteration's loss (see the module docstring); a pure function of (seed, iteration) and its inputs."""

    def __init__(self, network: AVNetwork, experts: list[torch.Tensor], labels: torch.Tensor, cfg: MTTConfig,
                 seed: int):
        self.network = network
        self.layout = ParameterLayout(network)
        self.experts = experts
        self.labels = expand_labels(labels, cfg.factor)
        self.cfg = cfg
        self.augment = DSA(cfg.augment)
        self.seed = seed

    def minibatches(self, iteration: int) -> list[torch.Tensor]:
        """N index batches: consecutive chunks of fresh permutations of the synthetic set (as MTT)."""
        n = len(self.labels)
        size = self.cfg.batch_syn or n
        g = generator(self.seed, "trajectory", iteration, 1)
        batches: list[torch.Tensor] = []
        while len(batches) < self.cfg.syn_steps:
            batches += torch.randperm(n, generator=g).split(size)
        return batches[: self.cfg.syn_steps]

    def student(self, start: torch.Tensor, audio: torch.Tensor, frames: torch.Tensor, syn_lr: torch.Tensor,
                iteration: int) -> torch.Tensor:
        """θ after N differentiable SGD steps from `start` on the synthetic pairs."""
        params = start.clone().requires_grad_(True)
        for step, idx in enumerate(self.minibatches(iteration)):
            a = self.augment(audio[idx], derive_seed(self.seed, "augment", iteration, step, 0), siamese=False)
            v = self.augment(frames[idx], derive_seed(self.seed, "augment", iteration, step, 1), siamese=False)
            outputs = functional_call(self.network, self.layout.unflatten(params), (a, v))
            loss = self.network.loss(outputs, self.labels[idx])
            (grad,) = torch.autograd.grad(loss, params, create_graph=True)
            params = params - syn_lr * grad
        return params

    def __call__(self, iteration: int, audio: torch.Tensor, frames: torch.Tensor,
                 syn_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        g = generator(self.seed, "trajectory", iteration, 0)
        expert = int(torch.randint(len(self.experts), (1,), generator=g))
        start_epoch = int(torch.randint(self.cfg.max_start_epoch, (1,), generator=g))
        trajectory = self.experts[expert]
        start, target = trajectory[start_epoch], trajectory[start_epoch + self.cfg.expert_epochs]
        student = self.student(start, expand(audio, self.cfg.factor), expand(frames, self.cfg.factor), syn_lr,
                               iteration)
        matching = (student - target).pow(2).sum() / (start - target).pow(2).sum()
        return {"total": matching, "syn_lr": syn_lr.detach(), "expert": torch.tensor(float(expert)),
                "start_epoch": torch.tensor(float(start_epoch))}


@register_method("mtt", MTTConfig, "MTT: match N student steps on synthetic data to M epochs of expert trajectories",
                 kind="synthesis", budgets=BUDGETS, validate=check_epochs)
def distill_mtt(dataset: AVDataset, ipc: int, cfg: MTTConfig, run: RunContext):
    network = build_network(dataset, cfg.encoder, cfg.head, 0)  # the architecture; weights come from the experts
    audio, frames, labels = starting_set(dataset, ipc, cfg, run.seed, run.progress)
    experts = expert_trajectories(dataset, cfg.experts, cfg.encoder, cfg.head, cfg.augment, cfg.num_experts,
                                  Path(cfg.expert_dir) if cfg.expert_dir else None, run.progress)
    network.to(run.device)
    experts = [trajectory.to(run.device) for trajectory in experts]
    syn_lr = torch.tensor(cfg.syn_lr_init, device=run.device)
    matcher = TrajectoryMatcher(network, experts, labels.to(run.device), cfg, run.seed)
    audio, frames = optimise_synthetic(
        audio.to(run.device), frames.to(run.device), lambda it, a, f: matcher(it, a, f, syn_lr),
        iterations=cfg.iterations, lr_audio=cfg.lr_audio, lr_frames=cfg.lr_frames, momentum=cfg.momentum,
        fingerprint=run.fingerprint, folder=run.folder, checkpoint_every=cfg.checkpoint_every,
        progress=run.progress, desc=f"mtt ipc={ipc}", extra={"syn_lr": (syn_lr, cfg.lr_lr)}, watch=run.watch)
    return audio.cpu(), frames.cpu(), labels
