"""Reader for the AVDD tensor format: a torch ``.pt`` dict per split.

Keys: ``audio_train`` [N,1,128,56] (log-mel dB), ``images_train`` [N,3,224,224] (0..255),
``labels_train`` [N], and the ``_test`` variants, in one file or spread over two. Files are
read with ``torch.load(weights_only=True)``, which refuses pickled code objects, so an
untrusted file cannot execute anything. AVDD conventions apply: the mel parameters are
torchaudio's defaults at 11 kHz, frames are normalised with AVDD's statistics, audio is not
normalised. A ``classes`` entry is ignored unless it is a list of names of the right length
(AVDD's are sometimes wrong); class names can be given explicitly.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from avdistill.data.audio import MelParams
from avdistill.data.dataset import AVDD_FRAME_MEAN, AVDD_FRAME_STD, AVDataset, AVSplit, Preprocessing
from avdistill.data.validate import check_same_layout, check_split, pixels_to_uint8
from avdistill.errors import DataError
from avdistill.files import sha256_file


def _read_pt(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of garbage files; the error says it
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  torch.load fails on garbage with many exception types
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours parts of its messages
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise DataError(path, f"not a readable AVDD .pt file ({first_line})") from None
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a dict of tensors, found a {type(obj).__name__}")
    return obj


def _split_from(obj: dict, path: Path, split: str) -> AVSplit:
    keys = [f"audio_{split}", f"images_{split}", f"labels_{split}"]
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(path, f"missing keys {', '.join(missing)} (found: {', '.join(map(str, obj)) or 'none'})")
    audio, images, labels = (obj[k] for k in keys)
    if isinstance(labels, list):
        labels = torch.tensor(labels)
    for key, value in zip(keys, (audio, images, labels)):
        if not isinstance(value, torch.Tensor):
            raise DataError(path, f"{key} is a {type(value).__name__}, expected a tensor")
    if images.dim() != 4:
        raise DataError(path, f"images_{split} has rank {images.dim()} (shape {tuple(images.shape)}), expected [N,3,H,W]")
    result = AVSplit(audio=audio, frames=pixels_to_uint8(images, path, split), labels=labels)
    check_split(result, path, split)
    result.labels = result.labels.long()
    return result


def load_avdd(train_path: str | os.PathLike, test_path: str | os.PathLike | None = None,
              classes: list[str] | None = None, name: str | None = None) -> AVDataset:
    """Load AVDD ``.pt`` data (train and test keys in one file, or one file per split)."""
    train_path = Path(train_path)
    test_path = Path(test_path) if test_path is not None else train_path
    train_obj = _read_pt(train_path)
    test_obj = train_obj if test_path == train_path else _read_pt(test_path)
    train = _split_from(train_obj, train_path, "train")
    test = _split_from(test_obj, test_path, "test")
    check_same_layout(train, test, test_path)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    if classes is None:
        stored = train_obj.get("classes")
        ok = isinstance(stored, (list, tuple)) and len(stored) == num_classes and all(isinstance(c, str) for c in stored)
        classes = list(stored) if ok else [f"class_{i}" for i in range(num_classes)]
    elif len(classes) < num_classes:
        raise DataError(train_path, f"labels go up to {num_classes - 1} but only {len(classes)} class names were given")
    _, n_mels, n_frames = train.audio.shape[1:]
    hop = 200
    mel = MelParams(n_mels=int(n_mels), clip_samples=(int(n_frames) - 1) * hop)
    channels, height, width = train.frames.shape[1:]
    mean, std = (AVDD_FRAME_MEAN, AVDD_FRAME_STD) if channels == 3 else ((sum(AVDD_FRAME_MEAN) / 3,), (sum(AVDD_FRAME_STD) / 3,))
    prep = Preprocessing(mel=mel, frame_size=(int(height), int(width)), frame_channels=int(channels),
                         frame_mean=mean, frame_std=std)
    sources = [str(train_path)] + ([str(test_path)] if test_path != train_path else [])
    return AVDataset(
        name=name or train_path.stem,
        classes=list(classes),
        train=train,
        test=test,
        preprocessing=prep,
        info={"source": "AVDD .pt", "files": sources, "sha256": [sha256_file(p) for p in sources]},
        source_path=str(train_path),
    )
