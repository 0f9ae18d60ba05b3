"""open_prepared, make_loader and windows_from_file over one small prepared cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from nas.data.dataset import make_loader, open_prepared
from nas.data.errors import AudioDecodeError, DataError
from nas.data.features import FeatureParams, file_features, normalise, windows_from_file
from nas.data.prepare import prepare_dataset


def write_clips(root: Path) -> None:
    rng = np.random.default_rng(0)
    for number, name in enumerate(("drums", "organ", "voice")):
        (root / name).mkdir(parents=True)
        for i in range(7):
            rate = 22050 if i % 2 else 16000
            t = np.arange(round((1.5 + 0.3 * i) * rate)) / rate
            wave = np.sin(2 * np.pi * 150 * (number + 1) * (1 + 0.03 * i) * t)
            wave += 0.05 * rng.standard_normal(t.size)
            soundfile.write(root / name / f"{name}_{i}.wav", (0.3 * wave).astype(np.float32), rate)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("dataset")
    write_clips(base / "audio")
    prepare_dataset({"root": str(base / "audio"), "cache_dir": str(base / "cache"),
                     "num_workers": 1, "splits": {"train": 0.7, "val": 0.15, "test": 0.15}},
                    progress=False)
    return open_prepared(base / "cache")


def test_prepared_data_describes_the_cache(prepared):
    assert prepared.class_names == ["drums", "organ", "voice"]
    assert prepared.num_classes == 3
    assert prepared.input_shape == (1, 64, 63)
    assert isinstance(prepared.features, np.memmap)
    assert prepared.meta["n_mels"] == 64 and len(prepared.meta["std"]) == 64
    total = sum(prepared.rows(split).size for split in ("train", "val", "test"))
    assert total == prepared.features.shape[0] == prepared.labels.size


def test_loader_shapes_and_types(prepared):
    loader = make_loader(prepared, "train", batch_size=8, shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (8, 1, 64, 63) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.int64
    assert sum(batch[1].numel() for batch in loader) == prepared.rows("train").size


def test_train_split_is_normalised(prepared):
    loader = make_loader(prepared, "train", batch_size=64, shuffle=False)
    x = torch.cat([batch[0] for batch in loader])
    per_band_mean = x.mean(dim=(0, 1, 3))
    per_band_std = x.std(dim=(0, 1, 3))
    assert torch.allclose(per_band_mean, torch.zeros(64), atol=2e-3)
    assert torch.allclose(per_band_std[per_band_std > 0.5], torch.ones(1), atol=2e-2)


def test_labels_follow_the_index(prepared):
    loader = make_loader(prepared, "val", batch_size=4, shuffle=False)
    labels = torch.cat([batch[1] for batch in loader]).numpy()
    np.testing.assert_array_equal(labels, prepared.labels[prepared.rows("val")])


def test_shuffling_is_seeded(prepared):
    def order(seed: int) -> list[int]:
        loader = make_loader(prepared, "train", batch_size=5, shuffle=True, seed=seed)
        return [float(x[:, 0, 10, 10].sum()) for x, _ in loader]

    assert order(1) == order(1)
    assert order(1) != order(2)
    loader = make_loader(prepared, "train", batch_size=5, shuffle=True, seed=1)
    first = [float(x.sum()) for x, _ in loader]
    second = [float(x.sum()) for x, _ in loader]
    assert first != second  # a new order every epoch, from the same seeded stream


def test_loader_workers_and_transform(prepared):
    loader = make_loader(prepared, "train", batch_size=6, shuffle=False, num_workers=1,
                         drop_last=True, transform=lambda x: x * 0.0 + 1.0)
    batches = list(loader)
    assert all(torch.equal(x, torch.ones(6, 1, 64, 63)) for x, _ in batches)
    assert len(batches) == prepared.rows("train").size // 6


def test_windows_from_file_matches_cache_rows(prepared):
    """A new file goes through the same ``file_features`` as ``melnas-prepare``, but the
    float32 log-mel may differ in its last bits between the two (prepare runs with one
    BLAS thread, maybe in worker processes; prediction with the caller's threads; on
    some CPUs and BLAS builds that changes the rounding). A value within that noise of
    a midpoint between two float16 numbers can be stored as either, so the check is in
    the stored float16 dB domain: equal, or one float16 step apart (not bit-equality).
    Normalisation is then the one function ``normalise`` on both paths: exact."""
    source = str(prepared.sources[prepared.rows("test")[0]])
    rows = np.flatnonzero(prepared.sources == source)
    stored = np.asarray(prepared.features[rows])
    path = Path(prepared.meta["root"]) / source
    meta = json.loads(json.dumps(prepared.meta))
    fresh, _, _ = file_features(path, FeatureParams.from_mapping(meta))
    assert fresh.dtype == stored.dtype == np.float16
    assert fresh.shape == stored.shape == (rows.size, 64, 63)
    adjacent = (fresh == stored) | (np.nextafter(fresh, stored) == stored)
    assert adjacent.all(), f"{(~adjacent).sum()} stored values more than one float16 step off"

    test_rows = prepared.rows("test")
    cached = torch.cat([x for x, _ in make_loader(prepared, "test", batch_size=512,
                                                  shuffle=False)])
    mean, std = (np.asarray(meta[key], dtype=np.float32) for key in ("mean", "std"))
    np.testing.assert_array_equal(cached[np.isin(test_rows, rows)].numpy(),
                                  normalise(stored, mean, std)[:, None])
    np.testing.assert_array_equal(windows_from_file(path, meta), normalise(fresh, mean, std)[:, None])


def test_windows_from_file_bad_file(prepared, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        windows_from_file(bad, prepared.meta)


def test_unknown_split(prepared):
    with pytest.raises(ValueError, match="split='valid'"):
        make_loader(prepared, "valid", batch_size=4, shuffle=False)


def test_empty_split_says_what_to_do(tmp_path):
    write_clips(tmp_path / "audio")
    prepare_dataset({"root": str(tmp_path / "audio"), "cache_dir": str(tmp_path / "cache"),
                     "num_workers": 1, "splits": {"train": 0.8, "val": 0.2, "test": 0.0}},
                    progress=False)
    data = open_prepared(tmp_path / "cache")
    assert len(make_loader(data, "val", batch_size=4, shuffle=False)) > 0
    with pytest.raises(DataError, match="split 'test' .* has no windows"):
        make_loader(data, "test", batch_size=4, shuffle=False)


def test_open_prepared_missing_or_stale(tmp_path, prepared):
    with pytest.raises(DataError, match="no prepared data in .*melnas-prepare"):
        open_prepared(tmp_path / "nothing")
    stale = tmp_path / "stale"
    stale.mkdir()
    for name in ("meta.json", "index.csv"):
        (stale / name).write_bytes((prepared.cache_dir / name).read_bytes())
    np.save(stale / "features.npy", np.zeros((3, 64, 63), dtype=np.float16))
    with pytest.raises(DataError, match="inconsistent"):
        open_prepared(stale)
    meta = json.loads((stale / "meta.json").read_text())
    meta["format_version"] = 0
    (stale / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 0"):
        open_prepared(stale)
