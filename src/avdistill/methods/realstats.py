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
- **On-disk cache**: each draw's real means are stored in blocks of :data:`BLOCK` draws under
  the user cache (or ``cache_dir``), keyed by everything they depend on (dataset content, seed,
  encoder preset, augmentation, real batch size, classes). Another IPC, the other method
  (DM <-> AVDD) or a rerun with another learning rate reuses them. Files are checked against
  their recorded sha256 on load; a damaged file is recomputed, never trusted.

The real side runs under ``torch.inference_mode``: it needs no graph.

Mixed precision (``precision="bf16"``): the encoder passes, real and synthetic, run under
``torch.autocast`` in bfloat16; embeddings are cast back to float32 before the class means, so
the loss, its gradient's accumulation into the synthetic set and the optimiser stay float32.
bfloat16 keeps float32's exponent range, so no loss scaling is needed (float16 would). The
cache key records the precision: bf16 means are not fp32 means.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from avdistill.augment import DSA
from avdistill.data.dataset import AVDataset
from avdistill.data.storage import tensor_digests, verify_digests
from avdistill.errors import ConfigError, DataError
from avdistill.io import atomic_path
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed

BLOCK = 64  # draws per cache file: bounded memory ([BLOCK, classes, D] x 2) and few files
FORMAT = "avdistill.realstats/1"
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
    activations in cache and run the same pass about twice as fast as one batch of 800 (the
    "flops" section of docs/BENCHMARKS.md). The result is the same, bit for bit on this CPU: the
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


class RealStatistics:
    """Per-draw real class means (audio, visual) for one run; see the module docstring."""

    def __init__(self, dataset: AVDataset, sampler, encoder: str, augment: DSA, seed: int, draws: int,
                 device: str = "cpu", cache_dir: Path | None = None, progress: bool = False, precision: str = "fp32",
                 chunk: int = 0):
        """`sampler` draws the real batch (:class:`avdistill.methods.matching.RealSampler`); `cache_dir`
        None: no disk cache; `draws` 0: a fresh draw every iteration."""
        self.dataset, self.sampler, self.encoder, self.augment = dataset, sampler, encoder, augment
        self.seed, self.draws, self.device, self.progress, self.precision = seed, draws, device, progress, precision
        self.chunk = chunk
        self.cache_dir = cache_dir / self._key() if cache_dir is not None and dataset.checksum else None
        self._block: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (block index, audio, visual)
        self._encoders: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}

    def draw(self, iteration: int) -> int:
        """The draw iteration `iteration` uses."""
        return iteration % self.draws if self.draws else iteration

    def encoders(self, draw: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The frozen random (audio, visual) encoders of `draw` (kept in memory when draws are cycled)."""
        if draw in self._encoders:
            return self._encoders[draw]
        prep = self.dataset.preprocessing
        pair = get_encoders(self.encoder, prep.audio_shape, prep.frame_shape, derive_seed(self.seed, "encoders", draw),
                            self.device)
        for p in (*pair[0].parameters(), *pair[1].parameters()):
            p.requires_grad_(False)
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
        path = self.cache_dir / f"block-{block:05d}.safetensors" if self.cache_dir else None
        cached = self._load(path)
        if cached is not None and cached[0].shape[0] >= count:
            return cached
        first = block * BLOCK
        pairs = [self.real_means(first + k) for k in tqdm(range(count), desc=f"real statistics {first}-{first + count - 1}",
                                                         disable=not self.progress, leave=False, dynamic_ncols=True)]
        audio = torch.stack([a for a, _ in pairs]).cpu()
        visual = torch.stack([v for _, v in pairs]).cpu()
        self._save(path, audio, visual)
        return audio, visual

    def _key(self) -> str:
        """Everything the real means depend on (not the IPC, the factor, the loss or the learning rate)."""
        ident = {"format": FORMAT, "dataset": self.dataset.checksum, "seed": self.seed, "encoder": self.encoder,
                 "augment": self.augment.strategy, "real_per_class": self.sampler.per_class,
                 "classes": self.sampler.classes, "torch": torch.__version__.split("+")[0],
                 "device": torch.device(self.device).type, "precision": self.precision}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]

    def _load(self, path: Path | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached block, or None when absent or damaged (then it is recomputed and rewritten)."""
        if path is None or not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            verify_digests(path, json.loads(meta["sha256"]))
            tensors = load_file(str(path))
            return tensors["audio"], tensors["visual"]
        except (SafetensorError, OSError, KeyError, ValueError, DataError):
            return None

    def _save(self, path: Path | None, audio: torch.Tensor, visual: torch.Tensor) -> None:
        if path is None:  # no cache asked for, or an in-memory dataset (no checksum to key on)
            return
        tensors = {"audio": audio.contiguous(), "visual": visual.contiguous()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "sha256": json.dumps(tensor_digests(tensors))})
