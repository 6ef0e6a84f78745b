"""Bit-identity hashes of every method's synthetic set (and of short evaluations) at a fixed seed.

A refactor that should not change behaviour is checked by running this before and after it and
comparing the output line by line (the hashes of the earlier merges came from the same idea):

    OMP_NUM_THREADS=1 python benchmarks/identity.py > before.txt
    ... change the code ...
    OMP_NUM_THREADS=1 python benchmarks/identity.py > after.txt && diff before.txt after.txt

Every method runs its smallest sensible budget on the embedded AV-Digits data (IPC 2, 3 iterations,
8 real pairs per class, 1-epoch feature networks, a one-entry DAVDD bank, one short MTT expert), so
the whole script takes a few minutes on one core. A hash is the sha256 of the set's tensors (shape,
dtype and bytes; never the file header, which holds versions and times). Each set is then evaluated
for one epoch (one run, AV ensemble head) and its accuracy printed in full, which checks the
evaluation protocol's training loop too. Thread count changes float rounding (herding's picks
depend on it): run with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import hashlib
import tempfile

import torch

import avdistill
from avdistill.evaluation import EvalConfig, evaluate_whole_data

BUDGETS = {
    "random": {},
    "herding": {"feature_epochs": 1},
    "kcenter": {"feature_epochs": 1},
    "dm": {"iterations": 3, "real_per_class": 8, "real_cache": "off"},
    "avdd": {"iterations": 3, "real_per_class": 8, "herding_epochs": 1, "real_cache": "CACHE"},
    "davdd": {"iterations": 3, "real_per_class": 8, "herding_epochs": 1, "bank_size": 1, "bank_epochs": (1,),
              "decoupler_epochs": 1, "bank_dir": "CACHE"},
    "mtt": {"iterations": 3, "num_experts": 1, "expert_train_epochs": 2, "max_start_epoch": 1, "expert_epochs": 1,
            "syn_steps": 2, "batch_syn": 8, "expert_dir": "CACHE"},
}


def tensor_hash(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)} {t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def main() -> None:
    data = avdistill.load_dataset("av-digits")
    with tempfile.TemporaryDirectory() as cache:
        for method, budget in BUDGETS.items():
            options = {k: cache if v == "CACHE" else v for k, v in budget.items()}
            syn = avdistill.distill(data, method, ipc=2, seed=0, progress=False, **options)
            result = avdistill.evaluate(syn, data, runs=1, seed=0, config=EvalConfig(epochs=1), progress=False)
            print(f"{method:8s} set {tensor_hash(syn.audio, syn.frames, syn.labels)} "
                  f"factor {syn.factor} eval-1-epoch {result.accuracies[0]!r}", flush=True)
        whole = evaluate_whole_data(data, runs=1, seed=0, config=EvalConfig(epochs=1), progress=False)
        print(f"whole    eval-1-epoch {whole.accuracies[0]!r}", flush=True)


if __name__ == "__main__":
    main()
