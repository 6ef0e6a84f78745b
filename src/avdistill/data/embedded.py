"""The embedded datasets, built from the one file shipped inside the package (see AV_DIGITS.md).

- ``av-digits``: the file's train split minus a validation split carved out of it by speaker
  (:mod:`avdistill.data.split`), and its test split.
- ``av-digits-hard``: the same splits with both modalities degraded (:mod:`avdistill.data.hard`,
  AV_DIGITS_HARD.md): the development benchmark that does not saturate.

Both are built in memory at load time, deterministically, in well under a second. A built
dataset's checksum is the digest of its tensors' content (:func:`avdistill.data.storage.dataset_digest`),
so anything keyed by it (caches, checkpoints, outputs) changes whenever the carving or the
degradation changes what the splits hold.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from avdistill.data.dataset import AVDataset
from avdistill.data.hard import degrade_dataset
from avdistill.data.split import carve_validation
from avdistill.data.storage import dataset_digest, load_prepared

NAME = "av-digits"
HARD_NAME = "av-digits-hard"
NAMES = (NAME, HARD_NAME)
FILENAME = "av_digits.safetensors"
VAL_FRACTION = 0.2  # of the 820 training clips, by speaker: 4 of the 23 training speakers, 160 clips
VAL_SEED = 0


def embedded_path() -> Path:
    return Path(str(resources.files("avdistill.data") / "assets" / FILENAME))


def load_embedded(name: str = NAME, verify: bool = True) -> AVDataset:
    """``av-digits`` or ``av-digits-hard`` (train / val by speaker / test)."""
    dataset = with_speaker_validation(load_prepared(embedded_path(), verify=verify))
    if name == HARD_NAME:
        dataset = degrade_dataset(dataset)
    dataset.checksum = dataset_digest(dataset)
    return dataset


def with_speaker_validation(dataset: AVDataset, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> AVDataset:
    """`dataset` with a validation split carved out of train by speaker; the speaker lists follow the pairs."""
    info = dict(dataset.info)
    speakers = [info["train_speakers"][i] for i in info["train_speaker_index"]]
    train, val, mask = carve_validation(dataset.train, fraction, seed, groups=speakers)
    for split, keep in (("train", ~mask), ("val", mask)):
        names = [s for s, k in zip(speakers, keep.tolist()) if k]
        info[f"{split}_speakers"] = sorted(set(names))
        info[f"{split}_speaker_index"] = [info[f"{split}_speakers"].index(s) for s in names]
    info["validation"] = {"carved_from": "train", "by": "speaker", "fraction": fraction, "seed": seed}
    return AVDataset(name=dataset.name, classes=dataset.classes, train=train, test=dataset.test, val=val,
                     preprocessing=dataset.preprocessing, info=info, source_path=dataset.source_path)
