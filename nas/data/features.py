"""Fixed-length windows and their log-mel spectrograms, shared by ``prepare`` and
prediction.

A recording becomes ``windows`` of ``window_seconds`` every ``hop_seconds``; each
window becomes a log-mel picture ``[n_mels, frames]`` (STFT frames centred with zero
padding at the window's edges, periodic Hann, Slaney mel filterbank, power in dB).
The cache stores it in float16; ``windows_from_file`` rounds to float16 too and
normalises exactly like the data loader, so a file gives the same tensors whether it
went through the cache or not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.fft

from nas.data.audio import load_audio
from nas.data.errors import AudioDecodeError, DataError, SkipKind

__all__ = [
    "AudioDecodeError",
    "FeatureParams",
    "cut_windows",
    "file_features",
    "log_mel",
    "normalise",
    "windows_from_file",
]

POWER_FLOOR = 1e-10  # -100 dB: digital silence and padding
_CHUNK_WINDOWS = 64  # bounds memory on long recordings


@dataclass(frozen=True)
class FeatureParams:
    """Everything that decides the features (the ``data.*`` keys of the same names).

    ``hop_seconds=None`` means half a window; it is stored resolved. ``min_seconds`` and
    ``silence_dbfs`` decide which recordings are too short or silent to use (see
    ``cut_windows``); ``silence_dbfs=None`` keeps silent recordings.
    """

    sample_rate: int = 16000
    window_seconds: float = 1.0
    hop_seconds: float | None = None
    min_seconds: float = 0.05
    silence_dbfs: float | None = -60.0
    n_mels: int = 64
    frame_seconds: float = 0.032
    frame_hop_seconds: float = 0.016
    fmin: float = 0.0
    fmax: float | None = None

    def __post_init__(self) -> None:
        if self.hop_seconds is None:
            object.__setattr__(self, "hop_seconds", self.window_seconds / 2)
        _require(self.sample_rate > 0, "sample_rate", self.sample_rate, "a positive integer")
        _require(self.window_seconds > 0, "window_seconds", self.window_seconds, "> 0")
        _require(self.hop_seconds > 0, "hop_seconds", self.hop_seconds, "> 0 (or null)")
        _require(
            0 <= self.min_seconds <= self.window_seconds,
            "min_seconds", self.min_seconds, f"between 0 and window_seconds={self.window_seconds}",
        )
        _require(self.silence_dbfs is None or self.silence_dbfs <= 0, "silence_dbfs",
                 self.silence_dbfs, "a level in dBFS, <= 0 (or null to keep silent files)")
        _require(self.n_mels >= 1, "n_mels", self.n_mels, ">= 1")
        _require(
            0 < self.frame_seconds <= self.window_seconds,
            "frame_seconds", self.frame_seconds, "> 0 and <= window_seconds",
        )
        _require(self.frame_hop_seconds > 0, "frame_hop_seconds", self.frame_hop_seconds, "> 0")
        nyquist = self.sample_rate / 2
        top = nyquist if self.fmax is None else self.fmax
        _require(0 <= self.fmin < top <= nyquist, "fmin/fmax", (self.fmin, self.fmax),
                 f"0 <= fmin < fmax <= sample_rate/2 = {nyquist}")
        _require(self.hop_samples >= 1 and self.frame_hop_samples >= 1 and self.n_fft >= 2,
                 "hop_seconds/frame_seconds/frame_hop_seconds",
                 (self.hop_seconds, self.frame_seconds, self.frame_hop_seconds),
                 "long enough for at least one sample at this sample_rate")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FeatureParams:
        """Pick this class's keys from a config or a cache's meta dict (others ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: values[key] for key in names if key in values})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_seconds * self.sample_rate)

    @property
    def min_samples(self) -> int:
        return math.ceil(self.min_seconds * self.sample_rate)

    @property
    def n_fft(self) -> int:
        return round(self.frame_seconds * self.sample_rate)

    @property
    def frame_hop_samples(self) -> int:
        return round(self.frame_hop_seconds * self.sample_rate)

    @property
    def frames(self) -> int:
        """STFT frames per window (centred frames: 63 for the 1 s / 16 ms defaults)."""
        padded = self.window_samples + 2 * (self.n_fft // 2)
        return 1 + (padded - self.n_fft) // self.frame_hop_samples

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.n_mels, self.frames)


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise DataError(f"data.{key}={value!r} is invalid: expected {expected}")


def cut_windows(signal: np.ndarray, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``float32 [samples]`` into ``float32 [n, window_samples]`` and their start
    times in seconds ``[n]``.

    An empty signal, one whose peak is below ``silence_dbfs`` (silent) and one shorter
    than ``min_seconds`` (too short) are rejected with ``AudioDecodeError``. A clip shorter
    than one window becomes one window with the clip in its centre and zeros either side
    (start time 0). Zeros rather than repeats of the clip: a spoken word or a one-shot
    sound is recognised by its envelope (onset, decay, the silence around it), which
    zero padding keeps, while repeating the clip would add onsets and a click at each
    seam that the sound never had. Centred rather than at the start: the sound lies in
    the window's middle, away from the STFT's zero-padded edges, as it tends to in
    windows cut from longer recordings. A tail shorter than one hop after the last
    full window is not used.
    """
    size, length, hop = signal.shape[0], params.window_samples, params.hop_samples
    if size == 0:
        raise AudioDecodeError("no audio samples", SkipKind.EMPTY)
    if params.silence_dbfs is not None:
        peak = float(np.max(np.abs(signal)))
        peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
        if peak_dbfs < params.silence_dbfs:
            raise AudioDecodeError(
                f"silent: peak {peak_dbfs:.1f} dBFS, below data.silence_dbfs="
                f"{params.silence_dbfs}", SkipKind.SILENT)
    if size < params.min_samples:
        raise AudioDecodeError(
            f"too short: {size / params.sample_rate:.3f} s ({size} samples), below "
            f"data.min_seconds={params.min_seconds}", SkipKind.TOO_SHORT)
    if size < length:
        padded = np.zeros(length, dtype=np.float32)
        start = (length - size) // 2
        padded[start : start + size] = signal
        return padded[None, :], np.zeros(1)
    count = 1 + (size - length) // hop
    starts = np.arange(count) * hop
    windows = np.lib.stride_tricks.sliding_window_view(signal, length)[starts]
    return np.ascontiguousarray(windows, dtype=np.float32), starts / params.sample_rate


@lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                    fmax: float | None) -> np.ndarray:
    top = sample_rate / 2 if fmax is None else fmax
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(top), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter
    bank = bank.astype(np.float32)
    bank.setflags(write=False)
    return bank


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) /
                    (np.log(6.4) / 27.0), linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)),
                    mel * (200.0 / 3))


def mel_filterbank(params: FeatureParams) -> np.ndarray:
    """Slaney-style mel filterbank (the same as ``librosa.filters.mel(htk=False,
    norm="slaney")``), ``float32 [n_mels, n_fft // 2 + 1]``."""
    return _mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin,
                           params.fmax)


def log_mel(windows: np.ndarray, params: FeatureParams) -> np.ndarray:
    """``float32 [n, window_samples]`` -> log-mel power in dB ``float32 [n, n_mels, frames]``."""
    bank = mel_filterbank(params)
    n_fft, half = params.n_fft, params.n_fft // 2
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    out = np.empty((windows.shape[0], params.n_mels, params.frames), dtype=np.float32)
    for start in range(0, windows.shape[0], _CHUNK_WINDOWS):
        chunk = windows[start : start + _CHUNK_WINDOWS]
        padded = np.pad(chunk, ((0, 0), (half, half)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)
        frames = frames[:, :: params.frame_hop_samples][:, : params.frames] * hann
        spectrum = scipy.fft.rfft(frames, axis=-1)  # [n, frames, n_fft // 2 + 1], complex64
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        mel = power @ bank.T  # [n, frames, n_mels]
        out[start : start + chunk.shape[0]] = (
            10.0 * np.log10(np.maximum(mel, POWER_FLOOR))
        ).transpose(0, 2, 1)
    return out


def file_features(path: str | Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode, window and featurise one recording.

    Returns ``(float16 [n, n_mels, frames], window start seconds [n], duration seconds)``;
    raises ``AudioDecodeError`` with the reason when the file cannot be used.
    """
    signal = load_audio(path, params.sample_rate)
    windows, offsets = cut_windows(signal, params)
    features = log_mel(windows, params).astype(np.float16)
    return features, offsets, signal.shape[0] / params.sample_rate


def normalise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-mel-band standardisation: ``[..., n_mels, frames]`` -> float32, same shape."""
    values = features.astype(np.float32)
    return (values - mean[:, None]) / std[:, None]


def windows_from_file(path: str | Path, meta: Mapping[str, Any]) -> np.ndarray:
    """Model input for a new recording: ``float32 [n_windows, 1, n_mels, frames]``,
    normalised with the train statistics in ``meta`` (a cache's meta dict or a
    checkpoint's ``data_meta``). Raises ``AudioDecodeError`` for a bad file."""
    params = FeatureParams.from_mapping(meta)
    mean = np.asarray(meta["mean"], dtype=np.float32)
    std = np.asarray(meta["std"], dtype=np.float32)
    features, _, _ = file_features(path, params)
    return normalise(features, mean, std)[:, None]
