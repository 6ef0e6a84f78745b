"""Real statistics computed once per draw: the same run as embedding the real batch every step,
cycled draws, and an on-disk cache that is reused across IPC and methods but never trusted blindly."""

from __future__ import annotations

import pytest
import torch

import avdistill
from avdistill.errors import ConfigError
from avdistill.methods import real_means

FAST = {"iterations": 5, "real_per_class": 6, "lr_audio": 0.1, "lr_frames": 0.1}


def run(dataset, method="dm", ipc=2, **options):
    syn = avdistill.distill(dataset, method, ipc=ipc, seed=3, progress=False, **{**FAST, **options})
    return syn.audio, syn.frames


def blocks(folder):
    return sorted(folder.rglob("block-*.safetensors"))


def test_cached_real_side_is_the_same_run_as_embedding_it_every_step(tiny_dataset_file, tiny_dataset, tmp_path):
    """The real means of a draw do not depend on where they were computed: in memory, from the disk cache,
    or for an in-memory dataset that has no checksum to key a cache on."""
    uncached = run(tiny_dataset_file, real_cache="off")
    first = run(tiny_dataset_file, real_cache=str(tmp_path / "cache"))
    again = run(tiny_dataset_file, real_cache=str(tmp_path / "cache"))
    in_memory = run(tiny_dataset)
    for result in (first, again, in_memory):
        assert all(torch.equal(a, b) for a, b in zip(uncached, result))


def test_cache_is_shared_across_ipc_and_methods(tiny_dataset_file, tmp_path):
    cache = tmp_path / "cache"
    run(tiny_dataset_file, real_cache=str(cache))
    (block,) = blocks(cache)
    written = block.stat().st_mtime_ns
    run(tiny_dataset_file, ipc=3, real_cache=str(cache))
    run(tiny_dataset_file, method="avdd", init="real", factor=1, real_cache=str(cache))
    assert blocks(cache) == [block] and block.stat().st_mtime_ns == written  # read, not recomputed
    run(tiny_dataset_file, real_cache=str(cache), real_per_class=4)  # another real batch: another key
    assert len(blocks(cache)) == 2


def test_default_cache_lives_in_the_user_cache(tiny_dataset_file, user_cache):
    run(tiny_dataset_file)
    assert len(blocks(user_cache / "real-stats")) == 1


def test_damaged_cache_is_recomputed_not_trusted(tiny_dataset_file, tmp_path):
    cache = tmp_path / "cache"
    expected = run(tiny_dataset_file, real_cache=str(cache))
    (block,) = blocks(cache)
    data = bytearray(block.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the stored means
    block.write_bytes(bytes(data))
    assert all(torch.equal(a, b) for a, b in zip(expected, run(tiny_dataset_file, real_cache=str(cache))))
    assert block.read_bytes() != bytes(data)  # rewritten with the recomputed means


def test_cycled_draws(tiny_dataset_file, tmp_path):
    """draws >= iterations is the plain run; fewer draws are computed once each and cycled."""
    plain = run(tiny_dataset_file, real_cache="off")
    assert all(torch.equal(a, b) for a, b in zip(plain, run(tiny_dataset_file, real_cache="off", draws=5)))
    cache = tmp_path / "cache"
    cycled = run(tiny_dataset_file, real_cache=str(cache), draws=2)
    assert not torch.equal(cycled[1], plain[1])
    from safetensors.torch import load_file

    (block,) = blocks(cache)
    assert load_file(str(block))["audio"].shape[0] == 2  # two draws computed, for five iterations


def test_runs_longer_than_a_block(tiny_dataset_file, tmp_path, monkeypatch):
    """Iterations past the first block read a second block, with the same result as no cache."""
    monkeypatch.setattr(real_means, "BLOCK", 4)
    options = {"iterations": 6, "real_per_class": 2}
    cache = tmp_path / "cache"
    full = run(tiny_dataset_file, ipc=1, real_cache=str(cache), **options)
    assert len(blocks(cache)) == 2
    assert all(torch.equal(a, b) for a, b in zip(full, run(tiny_dataset_file, ipc=1, real_cache="off", **options)))


@pytest.mark.parametrize("options", [{"draws": -1}, {"draws": 1.5}, {"chunk": 1}, {"chunk": -2}])
def test_bad_draws_and_chunks_are_refused(tiny_dataset_file, options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        run(tiny_dataset_file, **options)


def update_cosine(init, a, b) -> float:
    """Cosine similarity of two runs' changes to the same initial tensor."""
    return float(torch.nn.functional.cosine_similarity((a - init).flatten(), (b - init).flatten(), dim=0))


def test_bf16_autocast_runs_and_moves_the_set_like_fp32(tiny_dataset_file, tmp_path):
    """Mixed precision keeps the synthetic set float32 and moves it as the fp32 run does; its real means are
    cached apart from the fp32 ones."""
    cache = tmp_path / "cache"
    init = run(tiny_dataset_file, real_cache="off", iterations=1, lr_audio=1e-12, lr_frames=1e-12)
    fp32 = run(tiny_dataset_file, real_cache=str(cache))
    bf16 = run(tiny_dataset_file, real_cache=str(cache), precision="bf16")
    assert len(blocks(cache)) == 2
    for start, a, b in zip(init, fp32, bf16):
        assert b.dtype == torch.float32 and not torch.equal(a, b)
        assert update_cosine(start, a, b) > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_match_the_cpu_run(tiny_dataset_file):
    """On CUDA (fp32, and bf16 autocast) the run moves the set as on the CPU, and returns CPU float32 tensors."""
    init = run(tiny_dataset_file, real_cache="off", iterations=1, lr_audio=1e-12, lr_frames=1e-12)
    cpu = run(tiny_dataset_file, real_cache="off")
    for precision in ("fp32", "bf16"):
        syn = avdistill.distill(tiny_dataset_file, "dm", ipc=2, seed=3, progress=False, device="cuda",
                                **{**FAST, "real_cache": "off", "precision": precision})
        assert syn.audio.device.type == "cpu" and syn.audio.dtype == torch.float32
        for start, a, b in zip(init, cpu, (syn.audio, syn.frames)):
            assert update_cosine(start, a, b) > (0.99 if precision == "fp32" else 0.9)


@pytest.mark.parametrize("chunk", [2, 7, 13, 0, 1000])
def test_encoding_in_slices_is_the_same_pass(chunk):
    """The encoders and DSA's siamese draw treat samples alike, so slicing the batch changes nothing
    (balanced slices: 40 samples at most 13 per slice are 10+10+10+10, never a slice of one)."""
    from avdistill.augment import DSA
    from avdistill.methods.real_means import encode
    from avdistill.models import get_encoders

    f_audio, _ = get_encoders("small", (1, 16, 21), (1, 16, 16), 0)
    x = torch.randn(40, 1, 16, 21, generator=torch.Generator().manual_seed(0))
    augment = DSA("crop_scale_rotate")
    with torch.no_grad():
        for seed in range(4):
            assert torch.equal(encode(f_audio, augment, x, seed, chunk), f_audio(augment(x, seed)))


def test_sliced_and_whole_batch_runs_agree(tiny_dataset_file):
    whole = run(tiny_dataset_file, real_cache="off", chunk=10_000)
    for chunk in (0, 3):
        assert all(torch.equal(a, b) for a, b in zip(whole, run(tiny_dataset_file, real_cache="off", chunk=chunk)))
