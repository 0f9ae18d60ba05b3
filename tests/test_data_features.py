"""Windows and log-mel features: shapes, padding, and agreement with librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from nas.data.errors import AudioDecodeError, DataError
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


def test_short_clip_padded_above_min_seconds():
    params = FeatureParams(min_seconds=0.5)
    windows, offsets = cut_windows(np.ones(9000, dtype=np.float32), params)
    assert windows.shape == (1, 16000)
    assert windows[0, :9000].sum() == 9000 and not windows[0, 9000:].any()


def test_clip_below_min_seconds_is_rejected():
    with pytest.raises(AudioDecodeError, match="too short: 0.250 s"):
        cut_windows(np.ones(4000, dtype=np.float32), FeatureParams(min_seconds=0.5))


@pytest.mark.parametrize("kwargs,key", [
    ({"n_mels": 0}, "n_mels"), ({"window_seconds": 0}, "window_seconds"),
    ({"min_seconds": 2.0}, "min_seconds"), ({"fmax": 9000.0}, "fmin/fmax"),
    ({"frame_seconds": 2.0}, "frame_seconds"), ({"hop_seconds": -1.0}, "hop_seconds"),
])
def test_invalid_parameters_name_the_key(kwargs, key):
    with pytest.raises(DataError, match=f"data.{key}="):
        FeatureParams(**kwargs)
