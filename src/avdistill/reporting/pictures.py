"""Pictures of synthetic sets: one row per class, frames and spectrograms, before vs after.

Synthetic tensors live in model space; they are mapped back to pixels and dB with the
preprocessing stored in the set, so what you see is what the encoders were shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avdistill.io import atomic_path
from avdistill.synthetic import SyntheticSet


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def frames_as_images(syn: SyntheticSet) -> np.ndarray:
    """uint8 [M, H, W, 3] pixels of the stored frames (grey frames are repeated to RGB)."""
    pixels = syn.preprocessing.frames_from_model(syn.frames).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    return np.repeat(pixels, 3, axis=3) if pixels.shape[3] == 1 else pixels


def _columns(syn: SyntheticSet, c: int, per_class: int) -> list[int]:
    return [int(i) for i in (syn.labels == c).nonzero().flatten()[:per_class]]


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return Path(path)


def frame_grid(sets: list[tuple[str, SyntheticSet]], path: str | Path, per_class: int = 10) -> Path:
    """Rows = classes (named), column blocks = the given sets (e.g. before | after)."""
    plt = _pyplot()
    classes = sets[0][1].classes
    cols = [min(per_class, max(len(_columns(s, c, per_class)) for c in range(len(classes)))) for _, s in sets]
    fig, axes = plt.subplots(len(classes), sum(cols), figsize=(0.9 * sum(cols) + 1, 0.9 * len(classes) + 0.6),
                             squeeze=False)
    start = 0
    for (title, syn), ncol in zip(sets, cols):
        images = frames_as_images(syn)
        for c, name in enumerate(classes):
            picks = _columns(syn, c, ncol)
            for j in range(ncol):
                ax = axes[c, start + j]
                ax.set_xticks([]), ax.set_yticks([])
                if j < len(picks):
                    ax.imshow(images[picks[j]], interpolation="nearest")
                if start + j == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center")
        axes[0, start].set_title(title, loc="left", fontsize=10)
        start += ncol
    fig.suptitle("frames: one row per class", y=1.0)
    return _save(fig, path)


def spectrogram_grid(sets: list[tuple[str, SyntheticSet]], path: str | Path, per_class: int = 4) -> Path:
    """Log-mel spectrograms with time (s) and frequency (Hz, mel-spaced) axes; rows = classes."""
    import librosa

    plt = _pyplot()
    syn0 = sets[0][1]
    classes, mel = syn0.classes, syn0.preprocessing.mel
    seconds = mel.clip_samples / mel.sample_rate
    f_max = mel.f_max if mel.f_max is not None else mel.sample_rate / 2
    centres = librosa.mel_frequencies(mel.n_mels + 2, fmin=mel.f_min, fmax=f_max, htk=True)[1:-1]
    ticks = np.linspace(0, mel.n_mels - 1, 4).round().astype(int)
    cols = [min(per_class, max(len(_columns(s, c, per_class)) for c in range(len(classes)))) for _, s in sets]
    fig, axes = plt.subplots(len(classes), sum(cols), figsize=(1.9 * sum(cols) + 1, 1.3 * len(classes) + 0.8),
                             squeeze=False, sharex=True, sharey=True)
    start, image = 0, None
    for (title, syn), ncol in zip(sets, cols):
        db = syn.preprocessing.audio_from_model(syn.audio)[:, 0].numpy()
        for c, name in enumerate(classes):
            picks = _columns(syn, c, ncol)
            for j in range(ncol):
                ax = axes[c, start + j]
                if j < len(picks):
                    image = ax.imshow(db[picks[j]], origin="lower", aspect="auto", cmap="magma",
                                      extent=(0, seconds, -0.5, mel.n_mels - 0.5))
                ax.set_yticks(ticks, [f"{centres[t] / 1000:.1f}k" for t in ticks], fontsize=7)
                ax.tick_params(axis="x", labelsize=7)
                if start + j == 0:
                    ax.set_ylabel(f"{name}\nHz", fontsize=8)
                if c == len(classes) - 1:
                    ax.set_xlabel("time (s)", fontsize=8)
        axes[0, start].set_title(title, loc="left", fontsize=10)
        start += ncol
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="dB")
    fig.suptitle("log-mel spectrograms: one row per class")
    return _save(fig, path)
