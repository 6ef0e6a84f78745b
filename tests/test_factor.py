"""The IDM factor technique: partition, expansion, factor-aware init, and the synthetic-set file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from avdistill.errors import ConfigError, DataError
from avdistill.factor import cell_bounds, expand, expand_labels, pack
from avdistill.methods import distill
from avdistill.methods.initial_set import initial_synthetic, pick_real
from avdistill.synthetic import SyntheticSet, load_synthetic


def test_cell_bounds_cover_odd_sides_without_gaps():
    assert cell_bounds(16, 2) == [(0, 8), (8, 16)]
    assert cell_bounds(21, 2) == [(0, 10), (10, 21)]
    assert cell_bounds(7, 3) == [(0, 2), (2, 5), (5, 7)]
    with pytest.raises(ConfigError, match="lower the factor"):
        cell_bounds(1, 2)


@pytest.mark.parametrize("factor, size", [(2, (16, 16)), (2, (16, 21)), (3, (12, 15))])
def test_pack_then_expand_returns_each_constant_sample(factor, size):
    n = factor * factor
    values = torch.arange(3 * n, dtype=torch.float32)  # 3 stored samples, one constant image per cell
    full = values.view(-1, 1, 1, 1).expand(-1, 2, *size).clone()
    stored = pack(full, factor)
    assert stored.shape == (3, 2, *size)
    assert torch.allclose(expand(stored, factor), full, atol=1e-5)


def test_expand_cuts_cells_row_by_row_and_upsamples_each():
    x = torch.zeros(1, 1, 4, 4)
    x[..., :2, 2:] = 1.0  # top-right cell
    out = expand(x, 2)
    assert out.shape == (4, 1, 4, 4)
    assert [float(cell.mean()) for cell in out] == [0.0, 1.0, 0.0, 0.0]
    assert expand_labels(torch.tensor([3, 5]), 2).tolist() == [3, 3, 3, 3, 5, 5, 5, 5]


def test_expansion_is_differentiable_and_reaches_every_stored_pixel():
    x = torch.randn(2, 1, 8, 10, requires_grad=True)
    expand(x, 2).pow(2).sum().backward()
    assert x.grad is not None and bool((x.grad != 0).all())


def test_factor_init_packs_ipc_times_factor_squared_real_pairs(tiny_dataset):
    audio, frames, labels = initial_synthetic(tiny_dataset, ipc=2, init="real", seed=3, factor=2)
    assert audio.shape == (8, 1, 16, 21) and frames.shape == (8, 1, 16, 16)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    picks = pick_real(tiny_dataset, 8, 3)  # the same draw: 2 stored x 4 cells per class
    real_audio, real_frames, _ = tiny_dataset.model_inputs(tiny_dataset.train.subset(picks))
    assert torch.allclose(frames, pack(real_frames, 2)) and torch.allclose(audio, pack(real_audio, 2))
    assert bool((tiny_dataset.train.labels[picks].view(4, 8) == torch.arange(4)[:, None]).all())
    with pytest.raises(ConfigError, match=r"fewer than ipc=4 x factor² = 16"):
        initial_synthetic(tiny_dataset, ipc=4, init="real", seed=0, factor=2)
    with pytest.raises(ConfigError, match="factor must be between"):
        initial_synthetic(tiny_dataset, ipc=1, init="real", seed=0, factor=0)


def test_synthetic_set_stores_factor_and_trains_on_the_expansion(tiny_dataset, tmp_path):
    audio, frames, labels = initial_synthetic(tiny_dataset, ipc=1, init="real", seed=0, factor=2)
    syn = SyntheticSet(audio, frames, labels, tiny_dataset.classes, tiny_dataset.preprocessing, {"method": "x"},
                       factor=2)
    loaded = load_synthetic(syn.save(tmp_path / "syn.safetensors"))
    assert loaded.factor == 2 and loaded.ipc == 1 and len(loaded.labels) == 4
    assert json.loads((tmp_path / "syn.json").read_text())["factor"] == 2
    train_audio, train_frames, train_labels = loaded.training_pairs()
    assert train_audio.shape == (16, 1, 16, 21) and train_frames.shape == (16, 1, 16, 16)
    assert train_labels.tolist() == [c for c in range(4) for _ in range(4)]
    assert torch.equal(train_frames, expand(frames, 2))


def write_old_style(path, header: dict, n: int = 2):
    tensors = {"audio": torch.zeros(n, 1, 16, 21), "frames": torch.zeros(n, 1, 16, 16),
               "labels": torch.arange(n)}
    save_file(tensors, str(path), metadata={"avdistill": json.dumps(header)})


def test_files_without_factor_load_as_factor_one_and_bad_factors_are_refused(tiny_dataset, tmp_path):
    header = {"format": "avdistill.synthetic/1", "classes": tiny_dataset.classes,
              "preprocessing": tiny_dataset.preprocessing.to_dict(), "meta": {}}
    write_old_style(tmp_path / "old.safetensors", header)
    old = load_synthetic(tmp_path / "old.safetensors")
    assert old.factor == 1 and old.training_pairs()[0].shape == (2, 1, 16, 21)
    write_old_style(tmp_path / "bad.safetensors", {**header, "factor": 99})
    with pytest.raises(DataError, match="factor 99"):
        load_synthetic(tmp_path / "bad.safetensors")


def test_repeat_packing_keeps_the_factor_and_uses_every_pair_before_any_twice(tiny_dataset):
    """12 training pairs per class, IPC 4 at factor 2 needs 16: with repeat, the 12 picks of pick_real's draw
    and then its first 4 again, packed in that order."""
    audio, frames, labels = initial_synthetic(tiny_dataset, ipc=4, init="real", seed=3, factor=2, repeat=True)
    assert frames.shape == (16, 1, 16, 16) and labels.tolist() == [c for c in range(4) for _ in range(4)]
    picks = pick_real(tiny_dataset, 12, 3).view(4, 12)
    cycled = torch.cat([picks, picks[:, :4]], dim=1).reshape(-1)
    real_audio, real_frames, _ = tiny_dataset.model_inputs(tiny_dataset.train.subset(cycled))
    assert torch.allclose(frames, pack(real_frames, 2)) and torch.allclose(audio, pack(real_audio, 2))
    # Where the class holds enough pairs, repeat changes nothing.
    fits = initial_synthetic(tiny_dataset, ipc=2, init="real", seed=3, factor=2, repeat=True)
    assert torch.equal(fits[1], initial_synthetic(tiny_dataset, ipc=2, init="real", seed=3, factor=2)[1])
    repeated = distill(tiny_dataset, "avdd", ipc=4, seed=0, progress=False, iterations=1, init="real", factor=2,
                       real_per_class=4, pack="repeat")
    assert repeated.factor == 2 and len(repeated.training_pairs()[2]) == 4 * 4 * 4


def test_a_factor_that_cannot_pack_the_classes_shrinks_to_one_that_can(tiny_dataset):
    """12 training pairs per class: factor 2 packs IPC 3 (12 pairs) but not IPC 4 (16), which runs at factor 1
    and says so in the set, keeping the option as given."""
    fits = distill(tiny_dataset, "avdd", ipc=3, seed=0, progress=False, iterations=1, init="real", factor=2,
                   real_per_class=4)
    shrunk = distill(tiny_dataset, "avdd", ipc=4, seed=0, progress=False, iterations=1, init="real", factor=2,
                     real_per_class=4)
    assert fits.factor == 2 and len(fits.training_pairs()[2]) == 4 * 3 * 4
    assert shrunk.factor == 1 and len(shrunk.training_pairs()[2]) == 4 * 4
    assert shrunk.meta["config"]["factor"] == 2
    with pytest.raises(ConfigError, match="fewer than ipc=13"):  # more than a class holds even at factor 1
        distill(tiny_dataset, "avdd", ipc=13, seed=0, progress=False, iterations=1, init="real", factor=2)
