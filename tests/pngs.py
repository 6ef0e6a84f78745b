"""Reading the pictures back: is a file a PNG, and how many rows of pictures does a grid hold?"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def is_png(path: str | Path) -> bool:
    with Image.open(path) as img:
        img.verify()
        return img.format == "PNG"


def picture_rows(path: str | Path, fill: float = 0.25) -> int:
    """Rows of pictures in a grid PNG: horizontal bands where over `fill` of the pixels are not white.

    Gaps shorter than a tenth of the tallest band (a saturated line inside a picture) are closed,
    bands under 40% of the tallest (titles, tick labels) are dropped.
    """
    with Image.open(path) as img:
        grey = np.asarray(img.convert("L"))
    inked = np.r_[0, (grey < 250).mean(1) > fill, 0].astype(int)
    bands = [[s, e] for s, e in zip(np.flatnonzero(np.diff(inked) == 1), np.flatnonzero(np.diff(inked) == -1))]
    if not bands:
        return 0
    tallest = max(e - s for s, e in bands)
    merged = [bands[0]]
    for s, e in bands[1:]:
        if s - merged[-1][1] < 0.1 * tallest:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    tallest = max(e - s for s, e in merged)
    return sum(e - s >= 0.4 * tallest for s, e in merged)
