"""DAVDD's pretrained bank and decoupler bank: K trained encoder pairs, each with light heads that
split a feature into a common (cross-modal) and a private (per-modality) part. Trained once per
(dataset, bank config) and cached on disk, so every later run, seed and IPC reuses it.

Pretrained bank (the paper: trained, diverse encoders; recipe *open*). Entry k is an (audio,
visual) encoder pair trained with the evaluation protocol's recipe (:func:`train_networks`:
ensemble head, Adam, DSA) on the whole real training split, seeded by ``derive_seed(bank_seed, "bank", k)``
and stopped after ``epochs[k % len(epochs)]`` epochs: different seeds *and* stopping points give
the diversity. ``kind="random"`` keeps the entries at their seeded random initialisation (the
ablation "random bank"; the decouplers are still trained on their features).

Decoupler bank (shape and losses *open*). Per entry and modality a :class:`Decoupler`:
standardise the feature (training-set mean/std), then two *separate* heads (``linear`` or
``mlp``: Linear-ReLU-Linear) give the common part c and the private part p, both L2-normalised
(c: the space the contrastive loss aligns; p: so the per-modality private matching is on the
same scale as the common terms, instead of ~100x larger as raw MLP outputs are). Separate heads mean no parameter is shared between the two
paths, so a loss on common parts alone never reaches a private head. Trained on the frozen
encoders' features of every real training pair (eval mode, no augmentation), Adam lr 1e-3, batch
128, with

    L = L_align + w_orth·L_orth + w_cls·L_cls + w_rec·L_rec,   w_orth = w_cls = w_rec = 1 by default,

    L_align: symmetric InfoNCE between audio-common and visual-common, temperature τ (0.1): the
             positive of a clip's audio is its own frame, the negatives the batch's other frames;
    L_orth:  decorrelation of common and private per modality: mean squared entry of the batch
             cross-correlation matrix between (column-standardised) c and p, audio + visual;
    L_cls:   cross-entropy of a linear classifier on each modality's private part, scaled by
             1/τ as the InfoNCE logits (keeps the private part informative), audio + visual;
    L_rec:   MSE reconstruction of the standardised feature from [c; p] by a linear decoder per
             modality (the split loses nothing), audio + visual.

The classifiers and decoders exist only for training and are not stored. ``decoupler="none"``
(the ablation "no decoupling") trains nothing: common = private = the L2-normalised
standardised feature.

Cache (:class:`avdistill.cache.TensorCache`, under ``bank_dir`` or the user cache): one
safetensors file per entry (state dicts: ``audio.*``, ``visual.*``, ``decoupler_audio.*``,
``decoupler_visual.*``; the entry's training figures in its header), keyed by the dataset checksum,
the fields of :meth:`BankConfig.identity`, the encoder preset, and the version and source code
that trains it. Entry k depends on k alone, so each is loaded or trained on its own. A dataset
without a checksum (built in memory) has no identity, so its bank is trained in memory and never
cached.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from avdistill.cache import TensorCache
from avdistill.config import option
from avdistill.data.dataset import AVDataset
from avdistill.files import user_cache_dir, versions
from avdistill.methods.coreset import embed_train_pairs
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed, generator
from avdistill.training import TrainConfig, train_networks

BANK_KINDS = ("pretrained", "random")
DECOUPLERS = ("mlp", "linear", "none")
# The source files a bank depends on (a change to any of them trains it again).
BANK_CODE = ("models", "augment", "training.py", "seeding.py", "data/dataset.py", "methods/coreset.py",
             "methods/bank.py")


@dataclass
class BankConfig:
    """Everything that decides a bank's contents besides the data and the encoder preset (DAVDD's options)."""

    bank: str = option("pretrained", "bank encoders: 'pretrained' (trained on the real training split) or 'random'",
                       choices=BANK_KINDS)
    bank_size: int = option(4, "K: encoder pairs in the bank", minimum=1)
    bank_epochs: tuple[int, ...] = option((3, 4, 6, 8), "training epochs of bank entry k: the (k mod len)-th value",
                                          nonempty=True, each={"minimum": 1})
    bank_seed: int = option(0, "seed of the bank (not the run seed: one bank serves every run and IPC)")
    decoupler: str = option("mlp", "decoupler heads: 'mlp' (Linear-ReLU-Linear), 'linear', or 'none' (no split)",
                            choices=DECOUPLERS)
    common_dim: int = option(64, "size of a common part", minimum=1)
    private_dim: int = option(64, "size of a private part", minimum=1)
    decoupler_hidden: int = option(256, "hidden units of an 'mlp' decoupler head", minimum=1)
    decoupler_epochs: int = option(30, "epochs of decoupler training on the real training features", minimum=1)
    nce_temperature: float = option(0.1, "decoupler training: InfoNCE temperature of the common-part alignment",
                                    above=0)
    w_orth: float = option(1.0, "decoupler training: weight of the common/private decorrelation loss")
    w_cls: float = option(1.0, "decoupler training: weight of the private-part classification loss")
    w_rec: float = option(1.0, "decoupler training: weight of the feature reconstruction loss")

    def identity(self) -> dict:
        """The fields that shape the bank: a random bank ignores the training epochs, no decoupler its settings."""
        d = dataclasses.asdict(self)
        if self.bank == "random":
            d.pop("bank_epochs")
        if self.decoupler == "none":
            for name in ("common_dim", "private_dim", "decoupler_hidden", "decoupler_epochs", "nce_temperature",
                         "w_orth", "w_cls", "w_rec"):
                d.pop(name)
        return d


def _head(dim: int, out: int, shape: str, hidden: int) -> nn.Module:
    if shape == "linear":
        return nn.Linear(dim, out)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


class Decoupler(nn.Module):
    """One modality's split: standardise, then separate common and private heads -> (c, p)."""

    def __init__(self, dim: int, cfg: BankConfig):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.identity = cfg.decoupler == "none"
        self.common_dim = dim if self.identity else cfg.common_dim
        self.common = nn.Identity() if self.identity else _head(dim, cfg.common_dim, cfg.decoupler,
                                                                cfg.decoupler_hidden)
        self.private = nn.Identity() if self.identity else _head(dim, cfg.private_dim, cfg.decoupler,
                                                                 cfg.decoupler_hidden)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, p), both L2-normalised: every matching term then compares unit vectors on one scale."""
        z = self.standardise(x)
        return F.normalize(self.common(z), dim=1), F.normalize(self.private(z), dim=1)


@dataclass
class BankEntry:
    """One frozen (audio, visual) encoder pair with its two decouplers."""

    audio: nn.Module
    visual: nn.Module
    decoupler_audio: Decoupler
    decoupler_visual: Decoupler

    def modules(self) -> dict[str, nn.Module]:
        return {"audio": self.audio, "visual": self.visual, "decoupler_audio": self.decoupler_audio,
                "decoupler_visual": self.decoupler_visual}

    def freeze(self, device: str) -> "BankEntry":
        for module in self.modules().values():
            module.to(device).eval()
            module.requires_grad_(False)
            module.zero_grad(set_to_none=True)  # no gradient left over from training
        return self

    @property
    def encoders(self) -> tuple[nn.Module, nn.Module]:
        return self.audio, self.visual


def info_nce(common_audio: torch.Tensor, common_visual: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised audio and visual parts; row i of each is the same clip."""
    logits = common_audio @ common_visual.T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def cross_correlation(common: torch.Tensor, private: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean squared entry of the batch cross-correlation matrix of c and p (0 when decorrelated)."""
    c = (common - common.mean(0)) / (common.std(0) + eps)
    p = (private - private.mean(0)) / (private.std(0) + eps)
    return (c.T @ p / len(c)).pow(2).mean()


def train_decouplers(features_audio: torch.Tensor, features_visual: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, cfg: BankConfig, seed: int) -> tuple[Decoupler, Decoupler, dict]:
    """Fit the audio and visual decouplers on paired real features; return them and the last epoch's losses."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dec_a, dec_v = Decoupler(features_audio.shape[1], cfg), Decoupler(features_visual.shape[1], cfg)
        for dec, feats in ((dec_a, features_audio), (dec_v, features_visual)):
            dec.mean.copy_(feats.mean(0))
            dec.std.copy_(feats.std(0).clamp_min(1e-6))
        if cfg.decoupler == "none":
            return dec_a, dec_v, {}
        classify = nn.ModuleList([nn.Linear(cfg.private_dim, num_classes) for _ in range(2)])
        decode = nn.ModuleList([nn.Linear(cfg.common_dim + cfg.private_dim, f.shape[1])
                                for f in (features_audio, features_visual)])
    params = [*dec_a.parameters(), *dec_v.parameters(), *classify.parameters(), *decode.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    shuffle = generator(seed, "shuffle")
    sums: dict[str, float] = {}
    for _ in range(cfg.decoupler_epochs):
        sums = {"align": 0.0, "orth": 0.0, "cls": 0.0, "rec": 0.0}
        batches = torch.randperm(len(labels), generator=shuffle).split(128)
        for idx in batches:
            terms = {"align": 0.0, "orth": 0.0, "cls": 0.0, "rec": 0.0}
            commons = []
            for m, (dec, feats) in enumerate(((dec_a, features_audio), (dec_v, features_visual))):
                common, private = dec(feats[idx])
                commons.append(common)
                terms["orth"] = terms["orth"] + cross_correlation(common, private)
                terms["cls"] = terms["cls"] + F.cross_entropy(classify[m](private) / cfg.nce_temperature, labels[idx])
                rec = decode[m](torch.cat([common, private], dim=1))
                terms["rec"] = terms["rec"] + F.mse_loss(rec, dec.standardise(feats[idx]))
            terms["align"] = info_nce(commons[0], commons[1], cfg.nce_temperature)
            loss = terms["align"] + cfg.w_orth * terms["orth"] + cfg.w_cls * terms["cls"] + cfg.w_rec * terms["rec"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] += float(value.detach()) / len(batches)
    return dec_a, dec_v, {name: round(value, 5) for name, value in sums.items()}


def _train_entry(dataset: AVDataset, cfg: BankConfig, encoder: str, k: int) -> tuple[BankEntry, dict]:
    seed = derive_seed(cfg.bank_seed, "bank", k)
    prep = dataset.preprocessing
    start = time.perf_counter()
    if cfg.bank == "pretrained":
        epochs = cfg.bank_epochs[k % len(cfg.bank_epochs)]
        f_audio, f_visual, _ = train_networks(dataset.train, dataset, TrainConfig(epochs=epochs, encoder=encoder), seed)
    else:
        epochs = 0
        f_audio, f_visual = get_encoders(encoder, prep.audio_shape, prep.frame_shape, seed)
    features_audio, features_visual = embed_train_pairs(f_audio, f_visual, dataset)
    encoder_seconds = time.perf_counter() - start
    dec_a, dec_v, losses = train_decouplers(features_audio, features_visual, dataset.train.labels,
                                            dataset.num_classes, cfg, derive_seed(seed, "bank", 1))
    info = {"entry": k, "seed": seed, "epochs": epochs, "encoder_seconds": round(encoder_seconds, 2),
            "decoupler_seconds": round(time.perf_counter() - start - encoder_seconds, 2), "decoupler_losses": losses}
    return BankEntry(f_audio, f_visual, dec_a, dec_v), info


def _empty_entry(dataset: AVDataset, cfg: BankConfig, encoder: str) -> BankEntry:
    """Modules of the right shapes for loading a stored entry (their initial weights are overwritten)."""
    prep = dataset.preprocessing
    with torch.random.fork_rng(devices=[]):  # leave the global RNG untouched
        f_audio, f_visual = get_encoders(encoder, prep.audio_shape, prep.frame_shape)
        return BankEntry(f_audio, f_visual, Decoupler(f_audio.embed_dim, cfg), Decoupler(f_visual.embed_dim, cfg))


def _state(entry: BankEntry) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().cpu().contiguous()
            for name, module in entry.modules().items() for key, value in module.state_dict().items()}


def _load_state(entry: BankEntry, tensors: dict[str, torch.Tensor]) -> BankEntry:
    for name, module in entry.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return entry


@dataclass
class Bank:
    entries: list[BankEntry]
    info: dict

    def __len__(self) -> int:
        return len(self.entries)


def bank_cache(dataset: AVDataset, cfg: BankConfig, encoder: str, root: Path | None = None) -> TensorCache:
    """Where the bank of `cfg` for `dataset` is cached (off for a dataset without a checksum)."""
    return TensorCache("davdd-bank", {"dataset": dataset.checksum, "config": cfg.identity(), "encoder": encoder},
                       BANK_CODE, (root or user_cache_dir("davdd-banks")) if dataset.checksum else None)


def entry_index(seed: int, iteration: int, entries: int) -> int:
    """The bank entry a run with `seed` matches in at `iteration` (drawn, so every entry serves every class)."""
    return int(torch.randint(entries, (1,), generator=generator(seed, "bank_entry", iteration)))


def load_or_train_bank(dataset: AVDataset, cfg: BankConfig, encoder: str = "small", root: Path | None = None,
                       device: str = "cpu", progress: bool = False) -> Bank:
    """The bank of `cfg` for `dataset`: each entry loaded from the cache under `root`, or trained and cached there."""
    cache = bank_cache(dataset, cfg, encoder, root)
    entries, infos = [], []
    for k in tqdm(range(cfg.bank_size), desc="davdd bank", disable=not progress, dynamic_ncols=True):
        trained: list[BankEntry] = []

        def train(k=k):
            entry, info = _train_entry(dataset, cfg, encoder, k)
            trained.append(entry)
            return _state(entry), {**info, "dataset": dataset.name, "versions": versions()}

        state, info = cache.get(f"entry{k}", train)
        entries.append(trained[0] if trained else _load_state(_empty_entry(dataset, cfg, encoder), state))
        infos.append(info)
    return Bank([e.freeze(device) for e in entries], {"config": cfg.identity(), "encoder": encoder,
                                                      "dataset_sha256": dataset.checksum, "entries": infos})
