"""Windows and log-mel features: shapes, padding, and agreement with librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from nas.data.errors import AudioDecodeError, DataError, SkipKind
from nas.data.features import FeatureParams, cut_windows, log_mel, mel_filterbank


def test_default_shape_is_64_by_63():
    params = FeatureParams()
    assert params.hop_seconds == 0.5
    assert params.input_shape == (1, 64, 63)
    assert (params.window_samples, params.hop_samples, params.n_fft) == (16000, 8000, 512)


@pytest.mark.parametrize("kwargs", [
    {}, {"n_mels": 40, "fmin": 50.0, "fmax": 7000.0},
    {"sample_rate": 22050, "frame_seconds": 0.025},
])
def test_filterbank_matches_librosa(kwargs):
    params = FeatureParams(**kwargs)
    expected = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft,
                                   n_mels=params.n_mels, fmin=params.fmin, fmax=params.fmax)
    np.testing.assert_allclose(mel_filterbank(params), expected, atol=1e-7)


def test_log_mel_matches_librosa():
    params = FeatureParams()
    window = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    mel = librosa.feature.melspectrogram(y=window[0], sr=16000, n_fft=512, hop_length=256,
                                         n_mels=64, center=True, pad_mode="constant")
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(log_mel(window, params)[0], expected, atol=1e-3)


def test_windows_hop_and_offsets():
    params = FeatureParams()
    signal = np.arange(40000, dtype=np.float32)
    windows, offsets = cut_windows(signal, params)
    assert windows.shape == (4, 16000)  # 0, 0.5, 1.0, 1.5 s; the 0.5 s tail is dropped
    np.testing.assert_array_equal(offsets, [0.0, 0.5, 1.0, 1.5])
    assert windows[1, 0] == 8000 and windows[3, -1] == 39999


def test_short_clip_is_centred_in_zeros():
    params = FeatureParams()
    clip = np.linspace(0.1, 0.9, 9000, dtype=np.float32)
    windows, offsets = cut_windows(clip, params)
    assert windows.shape == (1, 16000) and offsets.tolist() == [0.0]
    np.testing.assert_array_equal(windows[0, 3500:12500], clip)  # (16000 - 9000) / 2 each side
    assert not windows[0, :3500].any() and not windows[0, 12500:].any()


def test_defaults_keep_spoken_digit_lengths():
    """The Free Spoken Digit Dataset's shortest clip is 0.14 s at 8 kHz: kept by default."""
    params = FeatureParams(sample_rate=8000)
    assert params.min_seconds < 0.1
    windows, _ = cut_windows(np.full(round(0.14 * 8000), 0.1, dtype=np.float32), params)
    assert windows.shape == (1, 8000)


def test_clip_below_min_seconds_is_rejected():
    with pytest.raises(AudioDecodeError, match=r"too short: 0.250 s \(\d+ samples\)") as caught:
        cut_windows(np.ones(4000, dtype=np.float32), FeatureParams(min_seconds=0.5))
    assert caught.value.kind is SkipKind.TOO_SHORT


@pytest.mark.parametrize("peak,silence_dbfs,kept", [
    (0.0, -60.0, False), (0.0009, -60.0, False), (0.0011, -60.0, True),  # -60 dBFS = 0.001
    (0.0, None, True), (0.05, -20.0, False),
])
def test_silent_clips_are_rejected_below_silence_dbfs(peak, silence_dbfs, kept):
    signal = np.zeros(8000, dtype=np.float32)
    signal[4000] = -peak
    params = FeatureParams(silence_dbfs=silence_dbfs)
    if kept:
        assert cut_windows(signal, params)[0].shape == (1, 16000)
        return
    with pytest.raises(AudioDecodeError, match="silent: peak .* dBFS, below "
                                               f"data.silence_dbfs={silence_dbfs}") as caught:
        cut_windows(signal, params)
    assert caught.value.kind is SkipKind.SILENT


def test_empty_signal_is_rejected_even_without_a_minimum():
    params = FeatureParams(min_seconds=0.0, silence_dbfs=None)
    with pytest.raises(AudioDecodeError, match="no audio samples") as caught:
        cut_windows(np.zeros(0, dtype=np.float32), params)
    assert caught.value.kind is SkipKind.EMPTY


@pytest.mark.parametrize("kwargs,key", [
    ({"n_mels": 0}, "n_mels"), ({"window_seconds": 0}, "window_seconds"),
    ({"min_seconds": 2.0}, "min_seconds"), ({"fmax": 9000.0}, "fmin/fmax"),
    ({"frame_seconds": 2.0}, "frame_seconds"), ({"hop_seconds": -1.0}, "hop_seconds"),
    ({"silence_dbfs": 3.0}, "silence_dbfs"),
])
def test_invalid_parameters_name_the_key(kwargs, key):
    with pytest.raises(DataError, match=f"data.{key}="):
        FeatureParams(**kwargs)
