"""Export a synthetic set as a Hugging Face `datasets` dataset with a dataset card, ready to publish.

The output folder serves both ways the field loads data::

    README.md                            dataset card (the hub's format: YAML header, Markdown body)
    data/train-00000-of-00001.parquet    what the hub serves: load_dataset("parquet", data_files=...)
    data-00000-of-00001.arrow, dataset_info.json, state.json     datasets.load_from_disk(DIR)
    export.json                          the set's metadata, the export's options, software versions

One row per pair: ``image`` (Image, PNG: the frame in pixels, grey or RGB), ``audio`` (Audio, 16-bit
WAV: the spectrogram inverted with Griffin-Lim, as ``show`` does: a listening aid), ``spectrogram``
(Array2D float32: the log-mel dB [n_mels, frames] networks train on) and ``label`` (ClassLabel).
A set made with the IDM factor exports its training pairs (factor² per stored pair), or with
`packed` its stored pairs (factor x factor grids) without the audio column: a packed spectrogram
is several clips side by side, not one sound.

The table is built with pyarrow in the features' storage layout (bytes + path structs): `datasets`'
Audio encoder needs torchcodec (and system FFmpeg libraries) even for ready-made WAV bytes.
Nothing is half-written: the folder is built beside DIR and renamed onto it; an earlier export in
DIR is replaced as a whole, any other non-empty folder is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from avdistill.data.ingest.hf import require_datasets
from avdistill.errors import ConfigError
from avdistill.files import versions, write_json
from avdistill.reporting.card import dataset_card
from avdistill.reporting.pictures import frames_as_images
from avdistill.reporting.sound import spectrogram_to_wave, wav_bytes
from avdistill.synthetic import SyntheticSet

EXPORT_FORMAT = "avdistill.hf-export/1"
EXPORT_FILE = "export.json"
PARQUET_FILE = "data/train-00000-of-00001.parquet"


def export_rows(syn: SyntheticSet, packed: bool = False) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(uint8 pixels [N, H, W] or [N, H, W, 3], log-mel dB float32 [N, F, T], labels [N]) of the exported rows."""
    audio, frames, labels = (syn.audio, syn.frames, syn.labels) if packed else syn.training_pairs()
    pixels = frames_as_images(syn, frames)
    if syn.preprocessing.frame_channels == 1:
        pixels = pixels[..., 0]  # frames_as_images repeats grey to RGB; the export keeps one channel
    db = syn.preprocessing.audio_from_model(audio)[:, 0].float().contiguous()
    return pixels, db, labels.long()


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image  # Pillow: the optional extra hf

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset(columns: dict, features: dict, description: str = ""):
    """A `datasets.Dataset` of `columns` typed by `features`; Audio cells are {bytes, path} dicts.

    Audio columns go into the table as stored (pyarrow), past `datasets`' Audio encoder, which needs
    torchcodec even for ready-made bytes; every other column goes through `datasets` as usual.
    """
    datasets = require_datasets()
    import pyarrow as pa  # comes with datasets

    audio = {name: f for name, f in features.items() if isinstance(f, datasets.Audio)}
    rest = {name: f for name, f in features.items() if name not in audio}
    table = datasets.Dataset.from_dict({name: columns[name] for name in rest},
                                       features=datasets.Features(rest)).data.table
    for name, feature in audio.items():
        table = table.add_column(list(features).index(name), name, pa.array(columns[name], type=feature.pa_type))
    info = datasets.DatasetInfo(features=datasets.Features(features), description=description)
    return datasets.Dataset(table, info=info)


def build_dataset(syn: SyntheticSet, packed: bool = False, griffin_lim_iters: int = 32, progress: bool = True):
    """The synthetic set as a `datasets.Dataset` (in memory)."""
    datasets = require_datasets()
    pixels, db, labels = export_rows(syn, packed)
    names = [f"{i:05d}-{syn.classes[int(c)]}" for i, c in enumerate(labels)]
    columns = {"image": [{"bytes": _png(p), "path": f"{n}.png"} for p, n in zip(pixels, names)],
               "spectrogram": db.numpy(), "label": labels.tolist()}
    features = {"image": datasets.Image()}
    if syn.factor == 1 or not packed:
        mel = syn.preprocessing.mel
        columns["audio"] = [{"bytes": wav_bytes(spectrogram_to_wave(db[i], mel, griffin_lim_iters), mel.sample_rate),
                             "path": f"{names[i]}.wav"}
                            for i in tqdm(range(len(labels)), desc="griffin-lim", disable=not progress,
                                          dynamic_ncols=True)]
        features["audio"] = datasets.Audio(sampling_rate=mel.sample_rate)
    features["spectrogram"] = datasets.Array2D(shape=tuple(db.shape[1:]), dtype="float32")
    features["label"] = datasets.ClassLabel(names=list(syn.classes))
    return make_dataset(columns, features, f"{syn.meta.get('method', 'synthetic')} set exported by avdistill")


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise ConfigError(f"--out {out} is a non-empty folder that holds no avdistill export; "
                          "choose a new folder (an earlier export there would be replaced)")


def _is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / EXPORT_FILE).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _replace_folder(built: Path, out: Path) -> None:
    """Put the finished folder `built` at `out`: a rename, so readers never see a partial export."""
    if not out.exists():
        os.replace(built, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(built, out)
    shutil.rmtree(old)


def export_hf(syn: SyntheticSet, out: str | os.PathLike, packed: bool = False, griffin_lim_iters: int = 32,
              license: str | None = None, evaluation: dict | None = None, command: str | None = None,
              progress: bool = True) -> Path:
    """Write `syn` to the folder `out` as a `datasets` dataset (Arrow + Parquet) with a README.md card."""
    out = Path(out)
    _check_target(out)
    if griffin_lim_iters < 1:
        raise ConfigError(f"--griffin-lim-iters must be at least 1, got {griffin_lim_iters}")
    dataset = build_dataset(syn, packed, griffin_lim_iters, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes a private folder; the export gets the usual permissions
        with _quiet(not progress):
            dataset.save_to_disk(str(tmp))
            (tmp / PARQUET_FILE).parent.mkdir()
            dataset.to_parquet(str(tmp / PARQUET_FILE))
        record = {"format": EXPORT_FORMAT, "synthetic": syn.path, "packed": packed, "factor": syn.factor,
                  "rows": len(dataset), "griffin_lim_iters": griffin_lim_iters, "command": command,
                  "evaluation": evaluation, "meta": syn.meta, "versions": {**versions(), **_hf_versions()}}
        write_json(tmp / EXPORT_FILE, record)
        (tmp / "README.md").write_text(dataset_card(syn, dataset, record, license))
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _hf_versions() -> dict[str, str]:
    import datasets  # the optional extra hf
    import pyarrow  # comes with datasets

    return {"datasets": datasets.__version__, "pyarrow": pyarrow.__version__}


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence `datasets`' own progress bars (save_to_disk, to_parquet) with --quiet."""
    if not enabled:
        yield
        return
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars  # extra hf

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()
