"""DAVDD's pretrained bank and decoupler bank: K trained encoder pairs, each with light heads that
split a feature into a common (cross-modal) and a private (per-modality) part. Trained once per
(dataset, bank config) and cached on disk, so every later run, seed and IPC reuses it.

Pretrained bank (the paper: trained, diverse encoders; recipe *open*). Entry k is an (audio,
visual) encoder pair trained with the evaluation protocol (:func:`train_networks`: ensemble
head, Adam, DSA) on the whole real training split, seeded by ``derive_seed(bank_seed, "bank", k)``
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

Cache: ``<root>/<dataset checksum[:16]>-<config hash[:12]>/`` holds ``entry{k}.safetensors``
(state dicts: ``audio.*``, ``visual.*``, ``decoupler_audio.*``, ``decoupler_visual.*``) and
``bank.json`` (config, dataset checksum, versions, per-entry training figures), written last and
atomically: a folder without it is incomplete and is trained again. A dataset without a checksum
(built in memory) has no identity, so its bank is trained in memory and never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError, DataError
from avdistill.evaluation.protocol import EvalConfig, train_networks
from avdistill.io import atomic_path, user_cache_dir, versions, write_json
from avdistill.methods.features import embed_train_pairs
from avdistill.models import get_encoders
from avdistill.seeding import derive_seed, generator

BANK_KINDS = ("pretrained", "random")
DECOUPLERS = ("mlp", "linear", "none")
BANK_FILE = "bank.json"


@dataclass(frozen=True)
class BankConfig:
    """Everything that decides a bank's contents (and hence its cache folder)."""

    kind: str = "pretrained"
    size: int = 4
    epochs: tuple[int, ...] = (3, 4, 6, 8)
    seed: int = 0
    encoder: str = "small"
    decoupler: str = "mlp"
    common_dim: int = 64
    private_dim: int = 64
    hidden: int = 256
    decoupler_epochs: int = 30
    temperature: float = 0.1
    w_orth: float = 1.0
    w_cls: float = 1.0
    w_rec: float = 1.0

    def check(self) -> None:
        if self.kind not in BANK_KINDS:
            raise ConfigError(f"--bank must be one of {', '.join(BANK_KINDS)}, got {self.kind!r}")
        if self.decoupler not in DECOUPLERS:
            raise ConfigError(f"--decoupler must be one of {', '.join(DECOUPLERS)}, got {self.decoupler!r}")
        if self.size < 1:
            raise ConfigError(f"--bank-size must be >= 1, got {self.size}")
        if not self.epochs or min(self.epochs) < 1:
            raise ConfigError(f"--bank-epochs must be a list of epochs >= 1, got {self.epochs}")
        if min(self.common_dim, self.private_dim, self.hidden, self.decoupler_epochs) < 1:
            raise ConfigError("--common-dim, --private-dim, --decoupler-hidden and --decoupler-epochs must be >= 1")
        if self.temperature <= 0:
            raise ConfigError(f"--nce-temperature must be > 0, got {self.temperature}")

    def identity(self) -> dict:
        """The fields that shape the bank: a random bank ignores the training epochs, no decoupler its settings."""
        d = dataclasses.asdict(self)
        if self.kind == "random":
            d.pop("epochs")
        if self.decoupler == "none":
            for name in ("common_dim", "private_dim", "hidden", "decoupler_epochs", "temperature",
                         "w_orth", "w_cls", "w_rec"):
                d.pop(name)
        return d


def bank_folder(root: Path, dataset: AVDataset, cfg: BankConfig) -> Path:
    digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:12]
    return root / f"{dataset.checksum[:16]}-{digest}"


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
        self.common = nn.Identity() if self.identity else _head(dim, cfg.common_dim, cfg.decoupler, cfg.hidden)
        self.private = nn.Identity() if self.identity else _head(dim, cfg.private_dim, cfg.decoupler, cfg.hidden)

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
                terms["cls"] = terms["cls"] + F.cross_entropy(classify[m](private) / cfg.temperature, labels[idx])
                rec = decode[m](torch.cat([common, private], dim=1))
                terms["rec"] = terms["rec"] + F.mse_loss(rec, dec.standardise(feats[idx]))
            terms["align"] = info_nce(commons[0], commons[1], cfg.temperature)
            loss = terms["align"] + cfg.w_orth * terms["orth"] + cfg.w_cls * terms["cls"] + cfg.w_rec * terms["rec"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] += float(value.detach()) / len(batches)
    return dec_a, dec_v, {name: round(value, 5) for name, value in sums.items()}


def _train_entry(dataset: AVDataset, cfg: BankConfig, k: int) -> tuple[BankEntry, dict]:
    seed = derive_seed(cfg.seed, "bank", k)
    prep = dataset.preprocessing
    start = time.perf_counter()
    if cfg.kind == "pretrained":
        epochs = cfg.epochs[k % len(cfg.epochs)]
        f_audio, f_visual, _ = train_networks(dataset.train, dataset, EvalConfig(epochs=epochs, encoder=cfg.encoder),
                                              seed)
    else:
        epochs = 0
        f_audio, f_visual = get_encoders(cfg.encoder, prep.audio_shape, prep.frame_shape, seed)
    features_audio, features_visual = embed_train_pairs(f_audio, f_visual, dataset)
    encoder_seconds = time.perf_counter() - start
    dec_a, dec_v, losses = train_decouplers(features_audio, features_visual, dataset.train.labels,
                                            dataset.num_classes, cfg, derive_seed(seed, "bank", 1))
    info = {"entry": k, "seed": seed, "epochs": epochs, "encoder_seconds": round(encoder_seconds, 2),
            "decoupler_seconds": round(time.perf_counter() - start - encoder_seconds, 2), "decoupler_losses": losses}
    return BankEntry(f_audio, f_visual, dec_a, dec_v), info


def _empty_entry(dataset: AVDataset, cfg: BankConfig) -> BankEntry:
    """Modules of the right shapes for loading a stored entry (their initial weights are overwritten)."""
    prep = dataset.preprocessing
    with torch.random.fork_rng(devices=[]):  # leave the global RNG untouched
        f_audio, f_visual = get_encoders(cfg.encoder, prep.audio_shape, prep.frame_shape)
        return BankEntry(f_audio, f_visual, Decoupler(f_audio.embed_dim, cfg), Decoupler(f_visual.embed_dim, cfg))


def _state(entry: BankEntry) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().cpu().contiguous()
            for name, module in entry.modules().items() for key, value in module.state_dict().items()}


def _load_entry(dataset: AVDataset, cfg: BankConfig, path: Path) -> BankEntry:
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise DataError(path, f"unreadable bank entry ({exc}); delete {path.parent} to retrain the bank") from None
    entry = _empty_entry(dataset, cfg)
    for name, module in entry.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return entry


@dataclass
class Bank:
    entries: list[BankEntry]
    folder: Path | None
    info: dict

    def __len__(self) -> int:
        return len(self.entries)


def load_or_train_bank(dataset: AVDataset, cfg: BankConfig, root: Path | None = None, device: str = "cpu",
                       progress: bool = False) -> Bank:
    """The bank of `cfg` for `dataset`: loaded from its cache folder under `root`, or trained and cached there."""
    cfg.check()
    folder = bank_folder(root or user_cache_dir("davdd-banks"), dataset, cfg) if dataset.checksum else None
    if folder is not None and (folder / BANK_FILE).exists():
        info = json.loads((folder / BANK_FILE).read_text())
        if info.get("config") != json.loads(json.dumps(cfg.identity())) or info.get("dataset_sha256") != dataset.checksum:
            raise DataError(folder / BANK_FILE, "belongs to another bank config or dataset; delete the folder")
        entries = [_load_entry(dataset, cfg, folder / f"entry{k}.safetensors") for k in range(cfg.size)]
        return Bank([e.freeze(device) for e in entries], folder, info)
    start = time.perf_counter()
    entries, infos = [], []
    for k in tqdm(range(cfg.size), desc="davdd bank", disable=not progress, dynamic_ncols=True):
        entry, info = _train_entry(dataset, cfg, k)
        entries.append(entry)
        infos.append(info)
        if folder is not None:
            with atomic_path(folder / f"entry{k}.safetensors") as tmp:
                save_file(_state(entry), str(tmp), metadata={"entry": str(k), "seed": str(info["seed"]),
                                                            "epochs": str(info["epochs"])})
    info = {"config": cfg.identity(), "dataset": dataset.name, "dataset_sha256": dataset.checksum,
            "seconds": round(time.perf_counter() - start, 2), "entries": infos, "versions": versions()}
    if folder is not None:
        write_json(folder / BANK_FILE, info)
    return Bank([e.freeze(device) for e in entries], folder, info)
