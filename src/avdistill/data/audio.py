"""Log-mel spectrograms with the AVDD convention.

AVDD computes audio features with torchaudio's ``MelSpectrogram`` defaults followed by
``AmplitudeToDB`` (power, no top_db). torchaudio is not usable beside every torch build, so the
same definition is computed here with ``torch.stft`` and librosa's mel filterbank:

- periodic Hann window of ``win_length`` (= ``n_fft`` by default), hop ``hop_length``,
  centred frames with reflect padding, power 2;
- HTK mel scale, triangular filters without area normalisation, ``f_min`` .. ``f_max``
  (``f_max`` defaults to sr / 2);
- decibels: ``10 * log10(max(power, 1e-10))``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class MelParams:
    """How a waveform becomes a log-mel spectrogram. Defaults are AVDD's (1 x 128 x 56 per second)."""

    sample_rate: int = 11000
    clip_samples: int = 11000
    n_fft: int = 400
    win_length: int | None = None
    hop_length: int = 200
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None

    @property
    def n_frames(self) -> int:
        return 1 + self.clip_samples // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelParams":
        return cls(**d)


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: MelParams) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] HTK triangular filters, unnormalised (torchaudio's defaults)."""
    import librosa  # heavy (numba, scipy): imported once, when the first filterbank is built

    fb = librosa.filters.mel(
        sr=params.sample_rate,
        n_fft=params.n_fft,
        n_mels=params.n_mels,
        fmin=params.f_min,
        fmax=params.f_max if params.f_max is not None else params.sample_rate / 2,
        htk=True,
        norm=None,
        dtype="float64",
    )
    return torch.from_numpy(fb).float()


def fit_length(waveform: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad or crop the last axis to exactly `samples` (AVDD: one second at 11 kHz)."""
    n = waveform.shape[-1]
    if n >= samples:
        return waveform[..., :samples]
    return torch.nn.functional.pad(waveform, (0, samples - n))


def log_mel(waveform: torch.Tensor, params: MelParams = MelParams()) -> torch.Tensor:
    """Waveform [..., samples] (float, mono) -> log-mel power in dB [..., n_mels, n_frames].

    The waveform is first padded or cropped to ``params.clip_samples``.
    """
    wave = fit_length(waveform.float(), params.clip_samples)
    batch_shape = wave.shape[:-1]
    win_length = params.win_length or params.n_fft
    spec = torch.stft(
        wave.reshape(-1, wave.shape[-1]),
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        win_length=win_length,
        window=torch.hann_window(win_length, dtype=wave.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spec.abs().pow(2)  # [B, n_fft//2+1, frames]
    mel = torch.matmul(mel_filterbank(params), power)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return db.reshape(*batch_shape, params.n_mels, db.shape[-1])
