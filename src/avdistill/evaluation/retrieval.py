"""Cross-modal retrieval: does a synthetic set train audio and visual embeddings that find each other?

AVDD reports R@1, R@5 and median rank for audio->visual and visual->audio but leaves the
protocol open. Ours, per run:

1. Train fresh audio and visual encoders (the evaluation protocol's optimiser, schedule, DSA and
   encoder preset) with a :class:`ContrastiveHead` instead of a classifier: each encoder's
   embedding goes through its own linear projection to ``embed_dim`` and is L2-normalised; the
   loss is the symmetric InfoNCE of CLIP on the batch's audio x visual cosine similarities / τ.
   ``positives="class"`` (default) counts every visual item of the audio item's class as a
   positive (soft targets spread evenly over them), which is how class supervision enters;
   ``positives="pair"`` keeps only the item's own partner, CLIP's instance-level loss.
2. Embed the real, paired test split (no augmentation); similarity = cosine.
3. For each query, the rank is 1 + the number of non-relevant gallery items scoring at least as
   high as the best relevant one (ties count against the query, so a collapsed embedding scores
   at chance, not perfectly). R@K = fraction of queries with rank <= K; median rank over queries.
   ``match="class"`` (default) treats every gallery item of the query's class as relevant;
   ``match="pair"`` only the query's own partner.

Why class-level by default: synthetic pairs are formed per class (DM matches each modality's
class statistics, not instance correspondence), and in AV-Digits the test pairs are random
pairings within a class, so instance-level retrieval there measures nothing but chance. Use
``match="pair"`` on data with genuine pairs (frames and sound of the same video).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from avdistill.config import option, validate
from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.evaluation.protocol import EvalConfig
from avdistill.seeding import derive_seed
from avdistill.training import batches, train_networks

DIRECTIONS = ("a2v", "v2a")
METRICS = ("R@1", "R@5", "median_rank")


@dataclass
class RetrievalConfig:
    embed_dim: int = option(128, "retrieval: size of the shared audio/visual embedding", minimum=1)
    temperature: float = option(0.1, "retrieval: InfoNCE temperature τ", above=0)
    positives: str = option("class", "retrieval training positives: 'class' (same-class items) or 'pair'",
                            choices=("class", "pair"))
    match: str = option("class", "retrieval test relevance: 'class' (any same-class item) or 'pair'",
                        choices=("class", "pair"))


class ContrastiveHead(nn.Module):
    """Projects both embeddings into one space; outputs the L2-normalised (z_audio, z_visual)."""

    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, embed_dim: int = 128, temperature: float = 0.1,
                 positives: str = "class"):
        super().__init__()
        self.audio = nn.Linear(audio_dim, embed_dim)
        self.visual = nn.Linear(visual_dim, embed_dim)
        self.temperature, self.positives = temperature, positives

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.audio(f_audio), dim=1), F.normalize(self.visual(f_visual), dim=1)

    def loss(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        z_audio, z_visual = outputs
        logits = z_audio @ z_visual.T / self.temperature
        if self.positives == "pair":
            targets = torch.eye(len(labels), device=logits.device)
        else:
            same = (labels[:, None] == labels[None, :]).float()
            targets = same / same.sum(1, keepdim=True)  # symmetric, so it serves both directions
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def retrieval_metrics(similarity: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    """R@1, R@5 (fractions) and median rank for queries (rows) over a gallery (columns).

    rank = 1 + #{non-relevant items with similarity >= the best relevant item's similarity}.
    """
    if similarity.shape != relevant.shape or similarity.dim() != 2:
        raise ConfigError(f"similarity {tuple(similarity.shape)} and relevance {tuple(relevant.shape)} "
                          "must be matching [queries, gallery] matrices")
    return rank_metrics(ranks_of(similarity, relevant.bool()))


def ranks_of(similarity: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """[queries] rank of each query's best relevant item (see :func:`retrieval_metrics`)."""
    if not relevant.any(1).all():
        raise ConfigError("every query needs at least one relevant gallery item")
    best = similarity.masked_fill(~relevant, float("-inf")).amax(1, keepdim=True)
    return 1 + ((similarity >= best) & ~relevant).sum(1)


def rank_metrics(ranks: torch.Tensor) -> dict[str, float]:
    return {"R@1": float((ranks <= 1).float().mean()), "R@5": float((ranks <= 5).float().mean()),
            "median_rank": float(ranks.float().quantile(0.5))}


def blocked_ranks(queries: torch.Tensor, gallery: torch.Tensor, labels: torch.Tensor, match: str,
                  block: int = 1024) -> torch.Tensor:
    """Ranks of every query against the gallery (paired by index), `block` queries at a time.

    The [queries, gallery] similarity matrix is never whole: on a 10k-clip test split it would
    take 400 MB, and its masks as much again.
    """
    ranks = []
    for start in range(0, len(queries), block):
        rows = torch.arange(start, min(start + block, len(queries)), device=queries.device)
        if match == "class":
            relevant = labels[rows, None] == labels[None, :]
        else:
            relevant = rows[:, None] == torch.arange(len(gallery), device=queries.device)[None, :]
        ranks.append(ranks_of(queries[rows] @ gallery.T, relevant))
    return torch.cat(ranks)


@torch.no_grad()
def embed_test(f_audio, f_visual, head: ContrastiveHead, dataset: AVDataset, batch_size: int,
               device: str = "cpu", on: str = "test") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z_audio, z_visual, labels) of the real split `on` (test, or val to make choices)."""
    for net in (f_audio, f_visual, head):
        net.eval()
    batch, n = batches(dataset.split(on), dataset, device)
    parts = [(head(f_audio(a), f_visual(v)), y) for a, v, y in map(batch, torch.arange(n).split(batch_size))]
    return (torch.cat([z[0] for z, _ in parts]).cpu(), torch.cat([z[1] for z, _ in parts]).cpu(),
            torch.cat([y for _, y in parts]).cpu())


def retrieval_run(train, dataset: AVDataset, cfg: EvalConfig, rcfg: RetrievalConfig, seed: int,
                  device: str = "cpu") -> dict[str, dict[str, float]]:
    """One run: train contrastive encoders on `train`; metrics per direction on the real test split."""
    def head_factory(audio_dim: int, visual_dim: int, _num_classes: int) -> ContrastiveHead:
        return ContrastiveHead(audio_dim, visual_dim, rcfg.embed_dim, rcfg.temperature, rcfg.positives)

    f_audio, f_visual, head = train_networks(train, dataset, cfg, seed, device, head_factory=head_factory)
    z_audio, z_visual, labels = embed_test(f_audio, f_visual, head, dataset, cfg.test_batch, device, cfg.on)
    return {"a2v": rank_metrics(blocked_ranks(z_audio, z_visual, labels, rcfg.match)),
            "v2a": rank_metrics(blocked_ranks(z_visual, z_audio, labels, rcfg.match))}


@dataclass
class RetrievalResult:
    runs: list[dict[str, dict[str, float]]]
    config: dict = field(default_factory=dict)

    def values(self, direction: str, metric: str) -> list[float]:
        return [run[direction][metric] for run in self.runs]

    def mean(self, direction: str, metric: str) -> float:
        return statistics.fmean(self.values(direction, metric))

    def std(self, direction: str, metric: str) -> float:
        values = self.values(direction, metric)
        return statistics.pstdev(values) if len(values) > 1 else 0.0


def retrieval_runs(train, dataset: AVDataset, cfg: EvalConfig | None = None, rcfg: RetrievalConfig | None = None,
                   runs: int = 3, seed: int = 0, device: str = "cpu", progress: bool = True,
                   desc: str = "retrieval") -> RetrievalResult:
    """`runs` independent contrastive trainings on `train` (synthetic tensors or a real split)."""
    cfg, rcfg = validate(cfg or EvalConfig()), validate(rcfg or RetrievalConfig())
    if runs < 1:
        raise ConfigError(f"runs must be >= 1, got {runs}")
    results = [retrieval_run(train, dataset, cfg, rcfg, derive_seed(seed, "encoders", 30_000 + r), device)
               for r in tqdm(range(runs), desc=desc, disable=not progress, dynamic_ncols=True)]
    return RetrievalResult(results, {"runs": runs, "seed": seed, "eval_config": dataclasses.asdict(cfg),
                                     "retrieval_config": dataclasses.asdict(rcfg)})
