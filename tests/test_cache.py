"""Versioned caches: an entry is keyed by the avdistill version and the digest of the source files
that compute it, so an entry written by other code is ignored and recomputed, never reused."""

from __future__ import annotations

import json

import torch

import avdistill
import avdistill.cache as cache_module
from avdistill.cache import TensorCache, code_digest
from avdistill.grid.cells import cached_cell
from avdistill.methods.real_means import RealMeans

OPTIONS = dict(ipc=1, seed=0, iterations=3, real_per_class=4, progress=False)


def count_real_means(monkeypatch) -> list[int]:
    calls: list[int] = []
    compute = RealMeans.real_means
    monkeypatch.setattr(RealMeans, "real_means", lambda self, draw: calls.append(draw) or compute(self, draw))
    return calls


def test_code_digest_names_the_sources_and_changes_with_them(tmp_path):
    assert code_digest("models") != code_digest("augment") and len(code_digest("models", "seeding.py")) == 64
    assert code_digest("models", "seeding.py") == code_digest("seeding.py", "models")  # order does not matter


def test_real_means_from_other_code_are_recomputed_not_reused(tiny_dataset_file, tmp_path, monkeypatch):
    calls = count_real_means(monkeypatch)
    cache = str(tmp_path / "cache")
    first = avdistill.distill(tiny_dataset_file, "dm", real_cache=cache, **OPTIONS)
    assert calls == [0, 1, 2]
    avdistill.distill(tiny_dataset_file, "dm", real_cache=cache, **OPTIONS)
    assert calls == [0, 1, 2]  # this code's entry is reused
    digest = cache_module.code_digest
    monkeypatch.setattr(cache_module, "code_digest", lambda *sources: "edited-" + digest(*sources))
    edited = avdistill.distill(tiny_dataset_file, "dm", real_cache=cache, **OPTIONS)
    assert calls == [0, 1, 2] * 2  # the code changed: the old entry is ignored and the means computed again
    assert torch.equal(edited.audio, first.audio) and torch.equal(edited.frames, first.frames)
    monkeypatch.setattr(cache_module, "__version__", "99.0")
    avdistill.distill(tiny_dataset_file, "dm", real_cache=cache, **OPTIONS)
    assert calls == [0, 1, 2] * 3  # so is an entry of another version
    entries = sorted((tmp_path / "cache").rglob("block-*.safetensors"))
    assert len(entries) == 3  # one per code version; none was overwritten by another's values


def test_an_entry_under_a_foreign_identity_or_damaged_is_recomputed(tmp_path):
    computed = []

    def compute():
        computed.append(1)
        return {"x": torch.arange(4.0)}, {"note": "made"}

    cache = TensorCache("demo", {"a": 1}, ("seeding.py",), tmp_path)
    assert cache.get("entry", compute)[1] == {"note": "made"} and len(computed) == 1
    assert torch.equal(cache.get("entry", compute)[0]["x"], torch.arange(4.0)) and len(computed) == 1
    path = cache.path("entry")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert torch.equal(cache.get("entry", compute)[0]["x"], torch.arange(4.0)) and len(computed) == 2
    other = TensorCache("demo", {"a": 2}, ("seeding.py",), tmp_path)
    other.path("entry").parent.mkdir(parents=True, exist_ok=True)
    other.path("entry").write_bytes(path.read_bytes())  # a file of another identity under this key
    assert other.load("entry") is None
    assert TensorCache("demo", {"a": 1}, ("seeding.py",), None).get("entry", compute) and len(computed) == 3  # off


def test_grid_cells_from_other_code_are_recomputed(tmp_path, monkeypatch):
    path, runs = tmp_path / "cell.json", []

    def compute():
        runs.append(1)
        return {"accuracies": [0.5]}

    cached_cell(path, {"head": "ensemble"}, compute)
    cached_cell(path, {"head": "ensemble"}, compute)
    assert len(runs) == 1 and json.loads(path.read_text())["settings"]["code"] == code_digest(".")
    digest = cache_module.code_digest
    monkeypatch.setattr(cache_module, "code_digest", lambda *sources: "edited-" + digest(*sources))
    cached_cell(path, {"head": "ensemble"}, compute)
    assert len(runs) == 2


def test_the_ledger_counts_fills_and_the_recorded_cost_of_reused_entries(tmp_path):
    cache = TensorCache("demo", {"x": 1}, ("seeding.py",), tmp_path)
    with cache_module.cache_ledger() as first:
        cache.get("a", lambda: ({"t": torch.ones(2)}, {}))
        cache.get("a", lambda: ({"t": torch.ones(2)}, {}))  # filled by this run: not counted again as reused
    assert set(first.filled) == {"demo"} and first.reused == {}
    cache.save("b", {"t": torch.zeros(1)}, seconds=12.5)
    with cache_module.cache_ledger() as second:
        cache.get("b", lambda: ({"t": torch.ones(1)}, {}))
    assert second.summary() == {"filled": {}, "reused": {"demo": 12.5}}  # the cost it had when computed
