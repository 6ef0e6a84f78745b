"""Pictures of synthetic sets: one row per class, frames and spectrograms, before vs after.

Synthetic tensors live in model space; they are mapped back to pixels and dB with the
preprocessing stored in the set, so what you see is what the encoders were shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avdistill.files import atomic_path
from avdistill.models import get_encoders
from avdistill.seeding import generator
from avdistill.synthetic import SyntheticSet


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib  # heavy (about a second): imported when a picture is drawn, not by every command

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    return plt


def frames_as_images(syn: SyntheticSet, frames: torch.Tensor | None = None) -> np.ndarray:
    """uint8 [M, H, W, 3] pixels of the stored frames, or of `frames` in model space (grey is repeated to RGB)."""
    frames = syn.frames if frames is None else frames
    pixels = syn.preprocessing.frames_from_model(frames).clamp(0, 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    return np.repeat(pixels, 3, axis=3) if pixels.shape[3] == 1 else pixels


def _columns(syn: SyntheticSet, c: int, per_class: int) -> list[int]:
    return [int(i) for i in (syn.labels == c).nonzero().flatten()[:per_class]]


def save_png(fig, path: str | Path, dpi: int = 110) -> Path:
    """`fig` written to `path` as PNG (whole or not at all), then closed."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)


def _block_axes(plt, n_rows: int, cols: list[int], cell: tuple[float, float], margin: tuple[float, float],
                **kwargs) -> tuple[object, list[np.ndarray]]:
    """A figure of n_rows x sum(cols) axes in column blocks (one per set), a blank spacer between blocks."""
    ratios = [r for k, n in enumerate(cols) for r in ([0.35] if k else []) + [1.0] * n]
    height = cell[1] * n_rows + margin[1]
    fig, axes = plt.subplots(n_rows, len(ratios), squeeze=False, figsize=(cell[0] * sum(ratios) + margin[0], height),
                             gridspec_kw={"width_ratios": ratios, "hspace": 0.35, "top": 1 - 0.55 / height}, **kwargs)
    blocks, start = [], 0
    for k, n in enumerate(cols):
        if k:
            for ax in axes[:, start]:
                ax.set_axis_off()
            start += 1
        blocks.append(axes[:, start:start + n])
        start += n
    return fig, blocks


def frame_grid(sets: list[tuple[str, SyntheticSet]], path: str | Path, per_class: int = 10) -> Path:
    """Rows = classes (named), column blocks = the given sets (e.g. before | after)."""
    plt = pyplot()
    classes = sets[0][1].classes
    cols = [min(per_class, max(len(_columns(s, c, per_class)) for c in range(len(classes)))) for _, s in sets]
    fig, blocks = _block_axes(plt, len(classes), cols, (0.9, 0.9), (1.0, 0.6))
    for k, ((title, syn), ncol, axes) in enumerate(zip(sets, cols, blocks)):
        images = frames_as_images(syn)
        for c, name in enumerate(classes):
            picks = _columns(syn, c, ncol)
            for j in range(ncol):
                ax = axes[c, j]
                ax.set_xticks([]), ax.set_yticks([])
                if j < len(picks):
                    ax.imshow(images[picks[j]], interpolation="nearest")
                if k == 0 and j == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center")
        axes[0, 0].set_title(title, loc="left", fontsize=10)
    fig.suptitle("frames: one row per class", y=1 - 0.1 / fig.get_figheight())
    return save_png(fig, path)


def spectrogram_grid(sets: list[tuple[str, SyntheticSet]], path: str | Path, per_class: int = 3) -> Path:
    """Log-mel spectrograms with time (s) and frequency (Hz, mel-spaced) axes; rows = classes."""
    import librosa  # heavy (numba, scipy): imported when a spectrogram is drawn, not by every command

    plt = pyplot()
    syn0 = sets[0][1]
    classes, mel = syn0.classes, syn0.preprocessing.mel
    seconds = mel.clip_samples / mel.sample_rate
    f_max = mel.f_max if mel.f_max is not None else mel.sample_rate / 2
    centres = librosa.mel_frequencies(mel.n_mels + 2, fmin=mel.f_min, fmax=f_max, htk=True)[1:-1]
    ticks = np.linspace(0, mel.n_mels - 1, 4).round().astype(int)
    cols = [min(per_class, max(len(_columns(s, c, per_class)) for c in range(len(classes)))) for _, s in sets]
    fig, blocks = _block_axes(plt, len(classes), cols, (1.9, 1.3), (1.4, 0.8))
    image = None
    for k, ((title, syn), ncol, axes) in enumerate(zip(sets, cols, blocks)):
        db = syn.preprocessing.audio_from_model(syn.audio)[:, 0].numpy()
        for c, name in enumerate(classes):
            picks = _columns(syn, c, ncol)
            for j in range(ncol):
                ax = axes[c, j]
                if j < len(picks):
                    image = ax.imshow(db[picks[j]], origin="lower", aspect="auto", cmap="magma",
                                      extent=(0, seconds, -0.5, mel.n_mels - 0.5))
                ax.set_yticks(ticks, [f"{centres[t] / 1000:.1f}k" for t in ticks] if k == j == 0 else [], fontsize=7)
                # No tick at the clip's end: its label would run into the next picture's first one.
                ax.set_xticks([0, seconds / 2], ["0", f"{seconds / 2:.2g}"])
                ax.tick_params(axis="x", labelsize=7, labelbottom=c == len(classes) - 1)
                if k == 0 and j == 0:
                    ax.set_ylabel(f"{name}\nHz (mel scale)", fontsize=8)
                if c == len(classes) - 1:
                    ax.set_xlabel("time (s)", fontsize=8)
        axes[0, 0].set_title(title, loc="left", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=[ax for axes in blocks for ax in axes.flat], shrink=0.6, label="dB")
    factor = max(syn.factor for _, syn in sets)
    # One title line: a second one would run into the set titles below it.
    packed = f"; IDM factor {factor}: each picture packs {factor}x{factor} downscaled clips" if factor > 1 else ""
    fig.suptitle(f"log-mel spectrograms, one row per class{packed}", y=1 - 0.1 / fig.get_figheight())
    return save_png(fig, path, dpi=90)  # noise-like pictures compress badly: keep the file small


def loss_curves(log_path: str | Path, path: str | Path, title: str = "distillation loss terms") -> Path:
    """Every loss term of a run's ``losses.jsonl`` against the iteration (log scale).

    Each iteration draws fresh random encoders, so the raw curve is noisy: it is drawn faint,
    with a moving average (window: a tenth of the run) on top.
    """
    plt = pyplot()
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    iterations = np.array([r["iteration"] for r in records])
    window = max(1, len(records) // 10)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, term in enumerate(t for t in records[0] if t != "iteration"):
        values = np.array([r[term] for r in records], dtype=float)
        colour = f"C{k}"
        ax.plot(iterations, values, color=colour, alpha=0.3, linewidth=0.8)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(iterations[window - 1:], smooth, color=colour, linewidth=2.2 if term == "total" else 1.4, label=term)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (log scale)")
    ax.set_title(f"{title} (faint: raw; bold: mean of {window})" if window > 1 else title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


@torch.no_grad()
def embedding_plot(dataset, syn: SyntheticSet, path: str | Path, encoder: str = "small", seed: int = 0,
                   real_per_class: int = 100) -> Path:
    """PCA of real (dots) vs synthetic (stars) embeddings, one panel per modality, coloured by class.

    The encoders are fresh random ones, as DM/AVDD see the data. Large markers are the class
    means (circle: real, cross: synthetic): a cross on its circle is what distribution matching
    aims for. The projection is fit on the real points only.
    """
    plt = pyplot()
    prep = dataset.preprocessing
    f_audio, f_visual = get_encoders(encoder, prep.audio_shape, prep.frame_shape, seed)
    g = generator(seed, "real_batch", 0)
    picks = torch.cat([idx[torch.randperm(len(idx), generator=g)[:real_per_class]]
                       for idx in dataset.train.class_indices(dataset.num_classes)])
    real_audio, real_frames, real_labels = dataset.model_inputs(dataset.train.subset(picks))
    syn_audio, syn_frames, syn_labels = syn.training_pairs()
    cmap = plt.get_cmap("tab10" if dataset.num_classes <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, name, net, real, fake in ((axes[0], "audio", f_audio, real_audio, syn_audio),
                                      (axes[1], "visual", f_visual, real_frames, syn_frames)):
        r, s = net(real), net(fake)
        mean = r.mean(0)
        basis = torch.linalg.svd(r - mean, full_matrices=False).Vh[:2].T
        rp, sp = ((r - mean) @ basis).numpy(), ((s - mean) @ basis).numpy()
        ax.scatter(rp[:, 0], rp[:, 1], c=[cmap(int(c) % cmap.N) for c in real_labels], s=6, alpha=0.35)
        crowded = len(sp) > 10 * dataset.num_classes  # hundreds of stars would hide the real points
        ax.scatter(sp[:, 0], sp[:, 1], c=[cmap(int(c) % cmap.N) for c in syn_labels], s=25 if crowded else 120,
                   marker="*", edgecolors="black", linewidths=0.3 if crowded else 0.6, alpha=0.6 if crowded else 1.0)
        for c in range(dataset.num_classes):  # what distribution matching matches: the class means
            colour = cmap(c % cmap.N)
            ax.scatter(*rp[real_labels.numpy() == c].mean(0), s=170, marker="o", color=colour, edgecolors="black",
                       linewidths=1.5, zorder=3)
            ax.scatter(*sp[syn_labels.numpy() == c].mean(0), s=170, marker="X", color=colour, edgecolors="black",
                       linewidths=1.5, zorder=3)
        ax.set_title(f"{name} embeddings (random {encoder} encoder), PCA")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(c % cmap.N), label=n)
               for c, n in enumerate(dataset.classes)]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color="grey", markeredgecolor="black", markersize=11,
                           markeredgewidth=1.5, label="real class mean"),
                plt.Line2D([], [], marker="X", linestyle="", color="grey", markeredgecolor="black", markersize=11,
                           markeredgewidth=1.5, label="synthetic class mean")]
    handles += [plt.Line2D([], [], marker="*", linestyle="", color="grey", markeredgecolor="black",
                           markersize=12, label="synthetic")]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.subplots_adjust(right=0.85)
    return save_png(fig, path)
