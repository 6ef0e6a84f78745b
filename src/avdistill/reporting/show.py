"""Everything a person needs to judge a synthetic set by eye and ear, in one folder."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from avdistill.files import check_output_dir, versions, write_json
from avdistill.reporting.pictures import embedding_plot, frame_grid, frames_as_images, loss_curves, spectrogram_grid
from avdistill.reporting.sound import spectrogram_to_wave, write_wav
from avdistill.reporting.video import write_pair_video
from avdistill.run_folder import RunFolder
from avdistill.synthetic import SyntheticSet


def show(syn: SyntheticSet, out: str | Path, before: SyntheticSet | None = None, videos: bool = True,
         griffin_lim_iters: int = 32, progress: bool = True, dataset=None, clips_per_class: int | None = None) -> dict:
    """Write frames.png, spectrograms.png, one WAV (and one mp4) per training pair, and show.json.

    The grids show the stored pairs; the sound and clips are the pairs evaluation trains on, which
    with the IDM factor are the factor² full-size clips unpacked from each stored pair (a packed
    spectrogram is no sound). Also losses.png when the set's folder holds its ``losses.jsonl``, and
    embeddings.png when the source `dataset` is given. `clips_per_class` limits the WAV/mp4 files
    to the first pairs of each class (None: every pair).
    """
    out = check_output_dir(out)
    sets = ([("before", before)] if before is not None else []) + [("after" if before is not None else "synthetic", syn)]
    written = {"frames": str(frame_grid(sets, out / "frames.png")),
               "spectrograms": str(spectrogram_grid(sets, out / "spectrograms.png")), "audio": [], "video": []}
    log = RunFolder.of(syn.path).losses if syn.path else None
    if log is not None and log.exists() and log.stat().st_size > 0:
        written["losses"] = str(loss_curves(log, out / "losses.png"))
    if dataset is not None:
        written["embeddings"] = str(embedding_plot(dataset, syn, out / "embeddings.png",
                                                   syn.meta.get("config", {}).get("encoder", "small")))
    mel = syn.preprocessing.mel
    audio, frames, labels = syn.training_pairs()
    db = syn.preprocessing.audio_from_model(audio)[:, 0]
    images = frames_as_images(syn, frames) if videos else None
    counts: dict[int, int] = {}
    for i in tqdm(range(len(labels)), desc="audio/video", disable=not progress, dynamic_ncols=True):
        c = int(labels[i])
        k = counts[c] = counts.get(c, -1) + 1
        if clips_per_class is not None and k >= clips_per_class:
            continue
        stem = f"{c:02d}-{syn.classes[c]}-{k:02d}"
        samples = spectrogram_to_wave(db[i], mel, griffin_lim_iters)
        written["audio"].append(str(write_wav(out / "audio" / f"{stem}.wav", samples, mel.sample_rate)))
        if videos:
            written["video"].append(str(write_pair_video(out / "video" / f"{stem}.mp4", images[i], samples,
                                                         mel.sample_rate)))
    write_json(out / "show.json", {"synthetic": syn.path, "before": before.path if before else None,
                                   "meta": syn.meta, "files": written, "versions": versions()})
    return written
