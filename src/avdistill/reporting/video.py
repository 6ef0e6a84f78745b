"""A distilled pair as a short video: the frame held for the clip's duration, with its sound (PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avdistill.files import atomic_path

FPS = 25
AAC_RATE = 16000  # AAC has no 11 kHz mode; the sound is resampled by FFmpeg's swresample


def write_pair_video(path: str | Path, frame: np.ndarray, samples: np.ndarray, sample_rate: int,
                     min_size: int = 256) -> Path:
    """frame: uint8 [H, W, 3]; samples: float mono waveform. Writes H.264 + AAC in an mp4."""
    scale = max(1, -(-min_size // min(frame.shape[:2])))
    big = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)  # nearest-neighbour: pixels stay visible
    big = big[: big.shape[0] // 2 * 2, : big.shape[1] // 2 * 2]  # yuv420p needs even sides
    seconds = len(samples) / sample_rate
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = big.shape[1], big.shape[0], "yuv420p"
            audio = container.add_stream("aac", rate=AAC_RATE)
            audio.layout = "mono"
            for _ in range(max(1, round(seconds * FPS))):
                for packet in video.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_RATE)
            source = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="flt", layout="mono")
            source.sample_rate = sample_rate
            source.time_base = Fraction(1, sample_rate)
            source.pts = 0
            for resampled in resampler.resample(source) + resampler.resample(None):
                for packet in audio.encode(resampled):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return Path(path)
