"""Decoding: formats, channels, sample rates, names, and every way a file can be bad."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from nas.data.audio import load_audio
from nas.data.errors import AudioDecodeError

RATE = 16000


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (c + 1) / channels for c in range(channels)], 1)


@pytest.mark.parametrize("suffix,fmt,subtype", [
    (".wav", "WAV", "PCM_16"), (".wav", "WAV", "FLOAT"), (".flac", "FLAC", "PCM_24"),
    (".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III"), (".aiff", "AIFF", "PCM_16"),
])
def test_decodes_common_formats(tmp_path, suffix, fmt, subtype):
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, tone(1.0, 22050), 22050, format=fmt, subtype=subtype)
    signal = load_audio(path, RATE)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert abs(signal.size - RATE) <= 1200  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(signal))
    assert abs(np.argmax(spectrum) * RATE / signal.size - 440) < 5  # still a 440 Hz tone


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 44100, 48000, 96000])
def test_any_sample_rate_is_resampled(tmp_path, rate):
    path = tmp_path / "clip.wav"
    soundfile.write(path, tone(0.5, rate), rate)
    assert abs(load_audio(path, RATE).size - RATE // 2) <= 1  # 0.5 s of 11025 Hz: 5512 samples


def test_multichannel_is_averaged(tmp_path):
    path = tmp_path / "six.wav"
    data = tone(0.25, RATE, channels=6)
    soundfile.write(path, data, RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, RATE), data.mean(axis=1), atol=1e-6)


def test_non_ascii_name(tmp_path):
    path = tmp_path / "Gitarre_über_東京_🎸.flac"
    soundfile.write(path, tone(0.5, RATE), RATE)
    assert load_audio(path, RATE).size == RATE // 2


def write_text_wav(path):
    path.write_text("this is not audio\n")


def write_empty(path):
    path.write_bytes(b"")


def write_truncated(path):
    soundfile.write(path, tone(1.0, RATE), RATE)
    path.write_bytes(path.read_bytes()[:30])  # header cut in half


def write_nan(path):
    data = tone(1.0, RATE)
    data[100] = np.nan
    soundfile.write(path, data, RATE, subtype="FLOAT")


def write_inf(path):
    data = tone(1.0, RATE)
    data[5:8] = np.inf
    soundfile.write(path, data, RATE, subtype="FLOAT")


def write_no_samples(path):
    soundfile.write(path, np.zeros(0, dtype=np.float32), RATE)


@pytest.mark.parametrize("make,reason", [
    (write_text_wav, "cannot decode"), (write_empty, "empty file"),
    (write_truncated, "cannot decode"), (write_nan, "NaN or infinite"),
    (write_inf, "3 of 16000 samples are NaN or infinite"), (write_no_samples, "no audio samples"),
])
def test_bad_files_raise_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioDecodeError, match=reason):
        load_audio(path, RATE)


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(AudioDecodeError, match="cannot read file"):
        load_audio(tmp_path / "nope.wav", RATE)
