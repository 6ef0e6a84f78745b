"""AV-Digits-Hard: AV-Digits with both modalities degraded, so that neither alone nor a few
pairs per class suffice (the development benchmark; data card AV_DIGITS_HARD.md).

Every pair gets, independently per modality, an *interferer*: another pair of the same split
and a different class (seeded), and noise:

- audio (log-mel dB): in the power domain, ``P = P_clip + g_i * roll(P_interferer) + g_n * P_mean * E``
  with the interfering word ``AUDIO_INTERFERER_DB`` below the clip, circularly shifted in time by
  a random offset, and exponential (periodogram-like) noise ``AUDIO_NOISE_DB`` below the clip's
  mean power; back to dB with the same ``10 log10(max(P, 1e-10))`` as the pipeline;
- frames (pixels): ``(1 - a) * frame + a * interferer`` (a ghost of another digit, shifted by a
  few pixels) plus Gaussian pixel noise of std ``FRAME_NOISE_STD``, rounded and clipped to 0..255.

Audio and frames take different interferers, so the two modalities' confusions are
independent and fusing them helps. Interferers come from the pair's own split, so no split
sees another's content. Every operation is elementwise or a gather under torch generators
seeded per split: the same torch version gives the same tensors on any CPU. The strengths
were chosen on the validation split (``benchmarks/calibrate_hard.py choose``, the data card);
changing them changes the dataset's content digest, and with it every cache keyed by it.
"""

from __future__ import annotations

import dataclasses

import torch

from avdistill.data.dataset import AVDataset, AVSplit
from avdistill.seeding import generator

VERSION = "1.0"
AUDIO_INTERFERER_DB = 9.0  # the interfering word this many dB below the clip
AUDIO_NOISE_DB = 6.0  # noise power this many dB below the clip's mean power
FRAME_INTERFERER = 0.45  # weight of the ghost digit
FRAME_NOISE_STD = 60.0  # pixel noise std (0..255 scale)
FRAME_SHIFT = 3  # the ghost is shifted by up to this many pixels each way
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class Degradation:
    audio_interferer_db: float = AUDIO_INTERFERER_DB
    audio_noise_db: float = AUDIO_NOISE_DB
    frame_interferer: float = FRAME_INTERFERER
    frame_noise_std: float = FRAME_NOISE_STD
    frame_shift: int = FRAME_SHIFT


def interferers(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For every pair, the index of a seeded random pair of another class in the same split."""
    n = len(labels)
    pick = torch.randint(0, n, (n,), generator=g)
    for _ in range(64):  # redraw the same-class picks; a handful of rounds leaves none in practice
        same = labels[pick] == labels
        if not same.any():
            return pick
        pick[same] = torch.randint(0, n, (int(same.sum()),), generator=g)
    raise ValueError("cannot find interferers of another class (a split with a single class?)")


def degrade_audio(db: torch.Tensor, labels: torch.Tensor, d: Degradation, g: torch.Generator) -> torch.Tensor:
    power = torch.pow(10.0, db.double() / 10)
    other = power[interferers(labels, g)]
    shifts = torch.randint(0, power.shape[-1], (len(power),), generator=g).tolist()
    other = torch.stack([torch.roll(o, s, dims=-1) for o, s in zip(other, shifts)])
    level = power.mean(dim=(1, 2, 3), keepdim=True)
    noise = -torch.log1p(-torch.rand(power.shape, generator=g, dtype=torch.float64))  # Exp(1), inverse CDF
    mixed = power + 10 ** (-d.audio_interferer_db / 10) * other + 10 ** (-d.audio_noise_db / 10) * level * noise
    return (10 * torch.log10(mixed.clamp_min(1e-10))).to(db.dtype)


def degrade_frames(frames: torch.Tensor, labels: torch.Tensor, d: Degradation, g: torch.Generator) -> torch.Tensor:
    other = frames[interferers(labels, g)].double()
    shifts = torch.randint(-d.frame_shift, d.frame_shift + 1, (len(frames), 2), generator=g).tolist()
    other = torch.stack([torch.roll(o, (dy, dx), dims=(-2, -1)) for o, (dy, dx) in zip(other, shifts)])
    noise = torch.randn(frames.shape, generator=g, dtype=torch.float64) * d.frame_noise_std
    mixed = (1 - d.frame_interferer) * frames.double() + d.frame_interferer * other + noise
    return mixed.round().clamp(0, 255).to(torch.uint8)


def degrade_split(split: AVSplit, d: Degradation, seed: int) -> AVSplit:
    g = generator(seed, "degrade")
    audio = degrade_audio(split.audio, split.labels, d, g)
    return AVSplit(audio, degrade_frames(split.frames, split.labels, d, g), split.labels.clone())


def degrade_dataset(dataset: AVDataset, d: Degradation = Degradation()) -> AVDataset:
    """`dataset` (AV-Digits with its validation split) with every split degraded; normalisation
    statistics recomputed on the degraded train split, as the build of AV-Digits computes its own."""
    splits = {name: degrade_split(getattr(dataset, name), d, seed) for name, seed in SPLIT_SEEDS.items()
              if getattr(dataset, name) is not None}
    train = splits["train"]
    pixels, audio = train.frames.double() / 255, train.audio.double()
    prep = dataclasses.replace(dataset.preprocessing, frame_mean=(round(float(pixels.mean()), 6),),
                               frame_std=(round(float(pixels.std()), 6),), audio_mean=round(float(audio.mean()), 6),
                               audio_std=round(float(audio.std()), 6))
    info = {**dataset.info, "derived_from": dataset.name, "data_card": "AV_DIGITS_HARD.md",
            "degradation": {"version": VERSION, **dataclasses.asdict(d), "split_seeds": SPLIT_SEEDS}}
    return AVDataset(name="av-digits-hard", classes=list(dataset.classes), train=train, test=splits["test"],
                     val=splits.get("val"), preprocessing=prep, info=info, source_path=dataset.source_path)
