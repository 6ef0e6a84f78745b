"""Decode 1-second audio-visual windows from a media file with PyAV (FFmpeg).

One pass over the file's packets serves every window asked of it (AVE asks up to ten), and the
pass stops once the last window is covered. Per window:

- Audio: decoded, resampled by FFmpeg's swresample to ``sample_rate`` per channel, then
  averaged over channels (the ``waveform.mean(0)`` of torchaudio pipelines; swresample's own
  downmix would scale a stereo pair by 1/sqrt(2) instead). The window starts ``offset`` seconds
  after the file's first timestamp, is zero-padded or cropped to exactly one second, and becomes a
  log-mel spectrogram with :func:`avdistill.data.audio.log_mel` (AVDD's definition). A window
  whose audio covers less than ``min_coverage`` of the second is skipped as too short.
- Frame: the frame on screen at one instant of the window: the middle (``offset + 0.5`` s) by
  default, or with ``frame_fps``/``frame_index`` the k-th of n frames sampled at that rate
  (AVE: the 4th of 8 at 8 fps, i.e. ``offset + 3/8``). It is resized to ``frame_size`` without
  keeping the aspect ratio (AVDD stores 224x224 squares), with area averaging so downscaling
  does not alias, and stored as uint8 RGB (or grey).

Problems with the whole file (unreadable, no audio or video track) raise :class:`MediaError`;
problems with one window come back as a reason string in that window's place. A file that is
cut off or corrupt part-way keeps the windows decoded completely before the damage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from avdistill.data.audio import MelParams, log_mel
from avdistill.errors import ConfigError

_EPS = 1e-6  # seconds; frame times are rationals turned into floats


class MediaError(Exception):
    """The file as a whole cannot give samples; the message is the reason shown in the skip report."""


@dataclass(frozen=True)
class DecodeParams:
    """How a 1-second window becomes a (log-mel, frame) pair. Defaults follow AVDD."""

    sample_rate: int = 11000
    n_mels: int = 128
    frame_size: tuple[int, int] = (224, 224)
    grayscale: bool = False
    frame_fps: float | None = None
    frame_index: int | None = None
    min_coverage: float = 0.9

    def __post_init__(self):
        if self.sample_rate < 1000:
            raise ConfigError(f"--sample-rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.n_mels < 1:
            raise ConfigError(f"--n-mels must be positive, got {self.n_mels}")
        if len(self.frame_size) != 2 or min(self.frame_size) < 1:
            raise ConfigError(f"--frame-size must be positive, got {self.frame_size}")
        if (self.frame_fps is None) != (self.frame_index is None):
            raise ConfigError("--frame-fps and --frame-index go together (the k-th of n frames at n fps)")
        if self.frame_fps is not None and not (self.frame_fps > 0 and 0 <= self.frame_index < self.frame_fps):
            raise ConfigError(f"--frame-index must be in 0..{self.frame_fps:g} - 1 at --frame-fps {self.frame_fps:g}, "
                              f"got {self.frame_index}")
        if not 0.0 < self.min_coverage <= 1.0:
            raise ConfigError(f"--min-coverage must be in (0, 1], got {self.min_coverage}")

    @property
    def mel(self) -> MelParams:
        return MelParams(sample_rate=self.sample_rate, clip_samples=self.sample_rate, n_mels=self.n_mels)

    @property
    def frame_time(self) -> float:
        """Seconds after the window start of the frame that represents it."""
        return 0.5 if self.frame_fps is None else self.frame_index / self.frame_fps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DecodeParams":
        return cls(**{**d, "frame_size": tuple(d["frame_size"])})


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "strerror", None) or str(exc)).strip()  # FFmpeg's strerror leaves out the file name
    return text.splitlines()[0] if text else type(exc).__name__


def frame_pixels(frame, params: DecodeParams) -> torch.Tensor:
    """A PyAV video frame as uint8 [C, H, W] at ``params.frame_size`` (area-averaged), RGB or grey."""
    height, width = params.frame_size
    array = frame.to_ndarray(format="gray" if params.grayscale else "rgb24", width=width, height=height,
                             interpolation="AREA")
    array = array[None] if params.grayscale else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def decode_windows(path: str | Path, offsets: tuple[float, ...],
                   params: DecodeParams) -> list[tuple[torch.Tensor, torch.Tensor] | str]:
    """For each offset: (log-mel dB [1, n_mels, T] float32, frame uint8 [C, H, W]), or why it was skipped."""
    import av  # FFmpeg bindings, heavy: imported in the decoding processes, not by every command

    try:
        if Path(path).stat().st_size == 0:
            raise MediaError("empty file (0 bytes)")
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot open, corrupt or truncated? ({_first_line(exc)})") from None
    with container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None or audio is None:
            missing = " and ".join(kind for kind, s in (("video", video), ("audio", audio)) if s is None)
            raise MediaError(f"no {missing} track")
        origin = (container.start_time or 0) / av.time_base  # offsets count from the file's first timestamp
        starts = [origin + o for o in offsets]
        targets = [t + params.frame_time for t in starts]
        audio_end = max(starts) + 1.0
        pending = sorted(range(len(offsets)), key=lambda i: targets[i])
        chosen: dict[int, object] = {}
        previous = None  # the last decoded video frame
        chunks, audio_start, audio_seconds = [], None, 0.0
        resampler = av.AudioResampler(format="fltp", rate=params.sample_rate)
        failure = None
        try:
            for packet in container.demux(video, audio):
                if packet.stream is video and pending:
                    for frame in packet.decode():
                        if frame.time is None:
                            continue
                        while pending and frame.time > targets[pending[0]] + _EPS:
                            chosen[pending.pop(0)] = previous if previous is not None else frame
                        previous = frame
                elif packet.stream is audio and (audio_start is None or audio_start + audio_seconds < audio_end):
                    for frame in packet.decode():
                        if audio_start is None:
                            audio_start = frame.time or 0.0
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().mean(axis=0))
                            audio_seconds += out.samples / params.sample_rate
                if not pending and audio_start is not None and audio_start + audio_seconds >= audio_end:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().mean(axis=0))
        except (av.FFmpegError, ValueError) as exc:  # corrupt data: keep the windows decoded so far
            failure = f"decoding failed: {_first_line(exc)}"
        video_end = previous.time if previous is not None else None
        for i in pending:  # the video track ends before the target instant: its last frame, if inside the window
            if video_end is not None and video_end >= starts[i] - _EPS:
                chosen[i] = previous
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    results = []
    for i, (offset, start) in enumerate(zip(offsets, starts)):
        window = window_log_mel(wave, audio_start or 0.0, start, offset, params) if i in chosen else \
            f"video track ends before the window at {offset:g} s"
        if isinstance(window, str):
            results.append(f"{failure}; {window}" if failure else window)
        else:
            results.append((window, frame_pixels(chosen[i], params)))
    return results


def window_log_mel(wave: np.ndarray, audio_start: float, start: float, offset: float,
                   params: DecodeParams) -> torch.Tensor | str:
    """Log-mel dB [1, n_mels, T] of the second from `start` of mono `wave` (which begins at `audio_start`,
    both in seconds on the file's clock), zero-padded where the audio starts late; or why it is too short."""
    first = int(round((start - audio_start) * params.sample_rate))
    segment = wave[max(first, 0): max(first + params.sample_rate, 0)]
    covered = len(segment) / params.sample_rate
    if covered < params.min_coverage:
        return (f"audio covers only {covered:.2f} s of the window at {offset:g} s "
                f"(shorter than the window; need {params.min_coverage:g} s)")
    if first < 0:
        segment = np.concatenate([np.zeros(-first, np.float32), segment])
    return log_mel(torch.from_numpy(segment), params.mel).unsqueeze(0)
