"""The embedded default dataset, AV-Digits, shipped inside the package (see AV_DIGITS.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

NAME = "av-digits"
FILENAME = "av_digits.safetensors"


def embedded_path() -> Path:
    return Path(str(resources.files("avdistill.data") / "assets" / FILENAME))
