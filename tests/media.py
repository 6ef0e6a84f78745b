"""Real media files made with PyAV for the ingestion tests and benchmark: good clips and broken ones.

A class-``c`` clip carries a tone at ``tone_hz(c)`` and frames whose top half has a class colour,
so prepared datasets are learnable; the bottom half is a flat grey that encodes the frame index,
so tests can tell which frame was picked.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def tone_hz(label: int) -> float:
    return 300.0 + 250.0 * label


def class_colour(label: int) -> tuple[int, int, int]:
    return ((70 * label) % 256, (150 + 40 * label) % 256, (230 - 60 * label) % 256)


def frame_grey(index: int) -> int:
    """Grey level of frame `index`'s bottom half (distinct for the first 50 frames)."""
    return 5 * (index % 50)


def write_clip(path: str | Path, label: int = 0, seconds: float = 1.0, size: int = 32, fps: int = 25,
               sample_rate: int = 22050, channels: int = 2, video: bool = True, audio: bool = True,
               seed: int = 0, faststart: bool = False) -> Path:
    """An H.264 + AAC MP4 (either track can be left out) of a class-dependent tone and picture.

    With `faststart` the index goes before the data, so a cut-off copy still opens.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as container:
        if video:
            vs = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
        if audio:
            aus = container.add_stream("aac", rate=sample_rate)
            aus.layout = "stereo" if channels == 2 else "mono"
        if video:
            base = np.empty((size, size, 3), np.uint8)
            base[:] = class_colour(label)
            for i in range(int(round(seconds * fps))):
                image = np.minimum(base + rng.integers(0, 12, base.shape), 255).astype(np.uint8)
                image[size // 2:] = frame_grey(i)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(vs.encode(frame))
            container.mux(vs.encode())
        if audio:
            t = np.arange(int(round(seconds * sample_rate))) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz(label) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
            planes = np.stack([wave] * channels)
            for start in range(0, len(t), 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, start:start + 1024]), format="fltp",
                                                   layout=aus.layout.name)
                frame.sample_rate = sample_rate
                frame.pts = start
                container.mux(aus.encode(frame))
            container.mux(aus.encode())
    return path


def write_truncated(path: str | Path, keep: float = 0.4, **kwargs) -> Path:
    """A good clip cut to `keep` of its bytes (its index is lost with the tail)."""
    path = write_clip(path, **kwargs)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    return path


def write_not_media(path: str | Path) -> Path:
    """Text in a file with a video extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a video\n" * 20)
    return path
