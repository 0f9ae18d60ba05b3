"""Decode any recording to a mono float32 signal at the requested sample rate.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3, aiff, ...) is tried first;
audioread (ffmpeg, gstreamer or the standard-library readers, whichever is installed)
is the fallback. Every way a file can be unusable ends in ``AudioDecodeError`` whose
message is the reason, never in an unrelated exception.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import soundfile
import soxr

from nas.data.errors import AudioDecodeError, SkipKind


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Return the recording at ``path`` as ``float32 [samples]``, mono, at ``sample_rate``.

    Channels are averaged. Raises ``AudioDecodeError`` for an empty or undecodable
    file, a file with no samples, or NaN/inf samples.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise AudioDecodeError(f"cannot read file: {error.strerror or error}",
                               SkipKind.UNREADABLE) from error
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)", SkipKind.EMPTY)
    signal, native_rate = _decode(path)
    if signal.shape[0] == 0:
        raise AudioDecodeError("no audio samples in the file", SkipKind.EMPTY)
    if native_rate <= 0:
        raise AudioDecodeError(f"invalid sample rate {native_rate} in the file header")
    mono = signal.mean(axis=1, dtype=np.float64) if signal.shape[1] > 1 else signal[:, 0]
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    if bad:
        raise AudioDecodeError(f"{bad} of {mono.size} samples are NaN or infinite",
                               SkipKind.NON_FINITE)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ").astype(np.float32)
    return mono


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """``(float32 [samples, channels], native sample rate)`` from soundfile or audioread."""
    try:
        signal, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return signal, int(rate)
    except Exception as soundfile_error:  # noqa: BLE001 - libsndfile raises several types
        try:
            return _decode_with_audioread(path)
        except Exception as audioread_error:  # noqa: BLE001 - every backend has its own
            raise AudioDecodeError(
                f"cannot decode audio (soundfile: {_one_line(soundfile_error)}; audioread: "
                f"{_audioread_reason(audioread_error)})"
            ) from audioread_error


def _decode_with_audioread(path: Path) -> tuple[np.ndarray, int]:
    import audioread  # imported lazily: rarely needed, and its backends probe the system

    with audioread.audio_open(str(path)) as source:
        channels, rate = int(source.channels), int(source.samplerate)
        pcm = b"".join(source)
    if channels < 1:
        raise AudioDecodeError(f"invalid channel count {channels}")
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    usable = samples.size - samples.size % channels
    return samples[:usable].reshape(-1, channels), rate


def _audioread_reason(error: BaseException) -> str:
    if type(error).__name__ == "NoBackendError":
        if shutil.which("ffmpeg"):
            return "no installed decoder reads it, ffmpeg included (damaged, or not audio)"
        return "no installed decoder reads it (ffmpeg would add formats)"
    return _one_line(error) or type(error).__name__


def _one_line(error: BaseException) -> str:
    """The message on one line, without libsndfile's "Error opening '<path>': " prefix
    (the path is reported next to the reason anyway)."""
    text = " ".join(str(error).split())
    return re.sub(r"^Error opening .*?: ", "", text)
