"""Herding coreset (Welling, ICML'09): per class, greedily pick the real pair whose feature
brings the running mean of the picks closest to the class mean (:func:`avdistill.methods.coreset.herd`).

Features come from encoders trained on the real training split (:mod:`avdistill.methods.coreset`);
``--space`` ranks by joint AV features (AVDD's choice), audio only, or frames only. The ranking
is deterministic given the features; the seed changes the feature encoders' training.
"""

from __future__ import annotations

from avdistill.methods.base import RunContext, register_method
from avdistill.methods.coreset import CoresetConfig, herding_indices, real_pairs


# Declared rows (`avdistill bench --ablations herding`): AVDD's initialisation without its matching.
ABLATIONS = {"herding": {}, "herding + factor": {"factor": 2}}


@register_method("herding", CoresetConfig, "Herding coreset: real pairs whose running mean tracks the class mean",
                 kind="coreset", ablations=ABLATIONS)
def select_herding(dataset, ipc: int, cfg: CoresetConfig, run: RunContext):
    per_class = ipc * cfg.factor * cfg.factor
    picks = herding_indices(dataset, per_class, cfg.space, cfg.encoder, cfg.feature_epochs, run.seed, run.progress)
    return real_pairs(dataset, picks, cfg.factor)
