"""The bench report's pictures and sound: for every synthesis method of the main table, its set
before and after distillation (grids, loss curves, embeddings, WAV and mp4 clips).

The "before" set is what the method started from (:func:`avdistill.methods.initial_set`): a
synthesis method's own initialisation (same seed, init, IDM factor and herding settings),
otherwise the ``random`` coreset of the same seed and IPC; it is saved beside the set
(``initial.safetensors``) and reused while it belongs to the same run.
"""

from __future__ import annotations

from pathlib import Path

from avdistill.data.dataset import AVDataset
from avdistill.errors import DataError
from avdistill.methods import get_method, initial_set, make_config
from avdistill.reporting.show import show
from avdistill.run_folder import RunFolder
from avdistill.synthetic import SyntheticSet, load_synthetic


def before_set(dataset: AVDataset, syn: SyntheticSet) -> SyntheticSet:
    """The set `syn`'s method started from (see the module docstring), cached beside it."""
    path = RunFolder.of(syn.path).initial
    meta = syn.meta
    of = {"config": meta["config"], "seed": meta["seed"], "method": meta["method"],
          "code_sha256": meta.get("code_sha256")}
    if path.exists():
        try:
            before = load_synthetic(path)
        except DataError:
            before = None
        if before is not None and before.meta.get("of") == of:
            return before
    spec = get_method(meta["method"])
    before, _ = initial_set(dataset, spec, meta["ipc"], make_config(spec, meta["config"]), meta["seed"])
    before.meta["of"] = of
    before.save(path)
    return load_synthetic(path)


def write_pictures(dataset: AVDataset, sets: list[tuple[str, str, SyntheticSet]], report: Path, ipc: int,
                   clips_per_class: int, videos: bool, griffin_lim_iters: int, progress: bool) -> list[dict]:
    """Pictures of each (row label, folder name, set) under ``report/pictures/<folder name>``."""
    written = []
    for label, name, syn in sets:
        before = before_set(dataset, syn)
        files = show(syn, report / "pictures" / name, before, videos, griffin_lim_iters, progress, dataset,
                     clips_per_class=clips_per_class)
        written.append({"row": label, "ipc": ipc, "before": before.meta["what"], "files": files})
    return written
