"""The real half of a matching step, computed once per draw and reused.

DM and AVDD compare per-class mean embeddings of real and synthetic pairs under one random
*draw*: fresh encoders, a DSA transformation and a real batch, all seeded by (seed, draw). The
real class means depend on the draw alone, not on the synthetic set, its IPC, the IDM factor or
the loss, and they cost most of an iteration (the real batch is 10-100x the synthetic one). So:

- **Draws cycled** (``draws`` option, K > 0): iteration i uses draw i mod K, and each draw's real
  means are computed once and reused about iterations/K times. K = 0 (the default) is DM's and
  AVDD's way, a fresh draw every iteration (draw i at iteration i); K >= iterations is the same
  run. Fewer draws trade diversity of the random encoders for speed; docs/BENCHMARKS.md ("speed")
  measures the trade.
- **On-disk cache** (:class:`avdistill.cache.TensorCache`): each draw's real means are stored in
  blocks of :data:`BLOCK` draws under the user cache (or ``cache_dir``), keyed by everything they
  depend on (dataset content, seed, encoder preset, augmentation, real batch size, classes, and
  the version and source code that computes them). Another IPC, the other method (DM <-> AVDD)
  or a rerun with another learning rate reuses them; other code computes them again. Files are
  checked against their recorded sha256 on load; a damaged file is recomputed, never trusted.

The real side runs under ``torch.inference_mode``: it needs no graph.

Mixed precision (``precision="bf16"``): the encoder passes, real and synthetic, run under
``torch.autocast`` in bfloat16; embeddings are cast back to float32 before the class means, so
the loss, its gradient's accumulation into the synthetic set and the optimiser stay float32.
bfloat16 keeps float32's exponent range, so no loss scaling is needed (float16 would). The
cache key records the precision: bf16 means are not fp32 means.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from avdistill.augment import DSA
from avdistill.cache import TensorCache
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed, generator

BLOCK = 64  # draws per cache file: bounded memory ([BLOCK, classes, D] x 2) and few files
# The source files the real means depend on (a change to any of them computes them again).
REAL_MEANS_CODE = ("models", "augment", "seeding.py", "data/dataset.py", "methods/real_means.py")
PRECISIONS = ("fp32", "bf16")


def autocast(device: str, precision: str):
    """The autocast context of `precision` on `device` (a no-op context for fp32)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


CPU_CHUNK = 32  # samples per encoder call on a CPU; see :func:`encode`


def check_chunk(chunk: int) -> None:
    """A slice of one sample takes other convolution kernels (rounding differs by ~1e-6): refuse it."""
    if chunk == 1:
        raise ConfigError("chunk must be 0 (automatic) or at least 2")


def encode(encoder: torch.nn.Module, augment: DSA, x: torch.Tensor, seed: int, chunk: int) -> torch.Tensor:
    """``encoder(augment(x, seed))`` in balanced slices of at most `chunk` samples (0: automatic), concatenated.

    On a CPU the small encoders are memory-bound: slices of about 32 samples keep each layer's
    activations in cache. Against one batch of 800 they ran the real pass 2.1x and the synthetic
    pass 1.7x faster when introduced (commit 72e8906); against the AVDD code's per-class batches
    (66-82 samples) the current "flops" tables of docs/BENCHMARKS.md show no consistent difference.
    The result is the same, bit for bit on this CPU: the
    encoders and DSA's siamese transformation treat every sample alike, and balanced slices never
    leave a slice of one sample (which takes other kernels). GPUs want whole batches (automatic:
    no slicing on CUDA).
    """
    if chunk == 0:
        chunk = CPU_CHUNK if torch.device(x.device).type == "cpu" else len(x)
    slices = -(-len(x) // max(chunk, 1)) if len(x) > 1 else 1
    return torch.cat([encoder(augment(part, seed)) for part in torch.tensor_split(x, min(slices, max(len(x) // 2, 1)))])


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, D] mean embedding of each class (one batched scatter, no Python loop)."""
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(embeddings.dtype)
    return sums / counts[:, None]


class RealSampler:
    """Draws a seeded batch of real training pairs per class, normalised for the encoders.

    `classes` (default: all) is the subset to return, e.g. one process's share
    (:mod:`avdistill.distributed`), labelled 0..len-1 in that order. Every class's permutation is
    still drawn, in class order, so each class gets the same pairs as in the full batch.
    """

    def __init__(self, dataset: AVDataset, per_class: int, device: str = "cpu", classes: list[int] | None = None):
        self.dataset = dataset
        self.per_class = per_class
        self.device = device
        self.class_indices = dataset.train.class_indices(dataset.num_classes)
        self.classes = list(range(dataset.num_classes)) if classes is None else classes

    def sample(self, seed: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(audio, frames, labels): up to `per_class` pairs of each of its classes, without replacement."""
        g = generator(seed, "real_batch", iteration)
        picks = [idx[torch.randperm(len(idx), generator=g)[: self.per_class]] for idx in self.class_indices]
        picks = [picks[c] for c in self.classes]
        audio, frames, _ = self.dataset.model_inputs(self.dataset.train.subset(torch.cat(picks)))
        labels = torch.arange(len(picks)).repeat_interleave(torch.tensor([len(p) for p in picks]))
        return audio.to(self.device), frames.to(self.device), labels.to(self.device)


def random_encoders(preset: str, prep, seed: int, draw: int, device: str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module]:
    """The frozen, randomly initialised (audio, visual) encoders of `draw`: a pure function of (seed, draw),
    so every method of the DM family sees the same networks at the same draw."""
    pair = get_encoders(preset, prep.audio_shape, prep.frame_shape, derive_seed(seed, "encoders", draw), device)
    for p in (*pair[0].parameters(), *pair[1].parameters()):
        p.requires_grad_(False)
    return pair


class RealMeans:
    """Per-draw real class means (audio, visual) for one run; see the module docstring."""

    def __init__(self, dataset: AVDataset, sampler: RealSampler, encoder: str, augment: DSA, seed: int, draws: int,
                 device: str = "cpu", cache_dir: Path | None = None, progress: bool = False, precision: str = "fp32",
                 chunk: int = 0):
        """`sampler` draws the real batch; `cache_dir` None: no disk cache; `draws` 0: a fresh draw every iteration."""
        self.dataset, self.sampler, self.encoder, self.augment = dataset, sampler, encoder, augment
        self.seed, self.draws, self.device, self.progress, self.precision = seed, draws, device, progress, precision
        self.chunk = chunk
        self.cache = TensorCache("real-means", self._identity(), REAL_MEANS_CODE,
                                 cache_dir if dataset.checksum else None)  # no checksum, no identity: no cache
        self._block: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (block index, audio, visual)
        self._encoders: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}

    def draw(self, iteration: int) -> int:
        """The draw iteration `iteration` uses."""
        return iteration % self.draws if self.draws else iteration

    def encoders(self, draw: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The frozen random (audio, visual) encoders of `draw` (kept in memory when draws are cycled)."""
        if draw in self._encoders:
            return self._encoders[draw]
        pair = random_encoders(self.encoder, self.dataset.preprocessing, self.seed, draw, self.device)
        if not self.draws:  # a fresh draw per iteration: keep only the latest (the real and synthetic side share it)
            self._encoders.clear()
        self._encoders[draw] = pair
        return pair

    def augment_seed(self, draw: int) -> int:
        return derive_seed(self.seed, "augment", draw)

    def means(self, draw: int, needed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([C, D] audio, [C, D] visual) real class means of `draw`; `needed` is how many draws the run
        uses in all, so a block is filled only as far as the run goes."""
        block = draw // BLOCK
        if self._block is None or self._block[0] != block or self._block[1].shape[0] <= draw % BLOCK:
            self._block = (block, *self._load_or_compute(block, min(BLOCK, needed - block * BLOCK)))
        return self._block[1][draw % BLOCK].to(self.device), self._block[2][draw % BLOCK].to(self.device)

    def real_means(self, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the real class means of one draw (what a matching step without the cache does)."""
        f_audio, f_visual = self.encoders(draw)
        audio, frames, labels = self.sampler.sample(self.seed, draw)
        seed = self.augment_seed(draw)
        with torch.inference_mode(), autocast(self.device, self.precision):
            embedded_audio = encode(f_audio, self.augment, audio, seed, self.chunk).float()
            embedded_visual = encode(f_visual, self.augment, frames, seed, self.chunk).float()
        C = len(self.sampler.classes)
        return class_means(embedded_audio, labels, C), class_means(embedded_visual, labels, C)

    def _load_or_compute(self, block: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = f"block-{block:05d}"
        cached = self.cache.load(name)
        if cached is not None and cached[0]["audio"].shape[0] >= count:
            return cached[0]["audio"], cached[0]["visual"]
        first, start = block * BLOCK, time.perf_counter()
        pairs = [self.real_means(first + k) for k in tqdm(range(count), desc=f"real statistics {first}-{first + count - 1}",
                                                         disable=not self.progress, leave=False, dynamic_ncols=True)]
        audio = torch.stack([a for a, _ in pairs]).cpu()
        visual = torch.stack([v for _, v in pairs]).cpu()
        self.cache.save(name, {"audio": audio, "visual": visual}, seconds=time.perf_counter() - start)
        return audio, visual

    def _identity(self) -> dict:
        """Everything the real means depend on besides the code (not the IPC, the factor, the loss or the lr)."""
        return {"dataset": self.dataset.checksum, "seed": self.seed, "encoder": self.encoder,
                "augment": self.augment.strategy, "real_per_class": self.sampler.per_class,
                "classes": self.sampler.classes, "torch": torch.__version__.split("+")[0],
                "device": torch.device(self.device).type, "precision": self.precision}
