"""prepare_dataset / melnas-prepare end to end on tiny generated folders."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from hydra import compose, initialize_config_dir

from nas.data import cache
from nas.data import prepare as prepare_module
from nas.data.errors import DataError
from nas.data.prepare import prepare_dataset, prepare_for_run

CONF = Path(__file__).resolve().parents[1] / "conf"
CLASSES = {"bass": 110.0, "flute": 880.0, "noise": None}


def clip(seconds: float, rate: int, freq: float | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    if freq is None:
        return (0.2 * rng.standard_normal(t.size)).astype(np.float32)
    return (0.4 * np.sin(2 * np.pi * freq * (1 + 0.05 * seed) * t)).astype(np.float32)


def make_folder(root: Path, per_class: int = 5) -> Path:
    """``root/<class>/`` with ``per_class`` clips of 1.5-2.5 s at mixed rates and formats."""
    for number, (name, freq) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            rate = (16000, 22050, 44100)[i % 3]
            suffix = (".wav", ".flac", ".ogg")[i % 3]
            soundfile.write(root / name / f"{name}_{i}{suffix}",
                            clip(1.5 + 0.25 * i, rate, freq, seed=10 * number + i), rate)
    return root


def data_cfg(root: Path, cache_dir: Path, **overrides) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=[
            f"data.root={root}", f"data.cache_dir={cache_dir}", "data.num_workers=1",
            *[f"data.{key}={value}" for key, value in overrides.items()]])
    return cfg.data


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def add_broken_files(root: Path) -> dict[str, tuple[str, str]]:
    """Every kind of bad input, keyed by file name: its kind and a piece of the reason."""
    bass = root / "bass"
    (bass / "text.wav").write_text("not audio at all")
    (bass / "empty.flac").write_bytes(b"")
    soundfile.write(bass / "trunc.wav", clip(2.0, 16000, 110.0, 1), 16000)
    (bass / "trunc.wav").write_bytes((bass / "trunc.wav").read_bytes()[:40])
    nan = clip(2.0, 16000, 110.0, 2)
    nan[1000] = np.nan
    soundfile.write(bass / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = clip(2.0, 16000, 110.0, 3)
    inf[5] = -np.inf
    soundfile.write(bass / "inf.wav", inf, 16000, subtype="FLOAT")
    soundfile.write(bass / "blip.wav", clip(0.02, 16000, 110.0, 4), 16000)
    soundfile.write(bass / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    (bass / "notes.txt").write_text("session notes")
    (root / "loose.wav").write_bytes(b"RIFF")
    (bass / "._resource_fork.wav").write_bytes(b"\0\5\26\7")
    (bass / ".cache").mkdir()
    (bass / ".cache" / "x.wav").write_bytes(b"")
    return {"._resource_fork.wav": ("hidden", "hidden file"),
            ".cache": ("hidden", "hidden folder (not searched)"),
            "text.wav": ("undecodable", "cannot decode"), "empty.flac": ("empty", "empty file"),
            "trunc.wav": ("undecodable", "cannot decode"),
            "nan.wav": ("non_finite", "NaN or infinite"),
            "inf.wav": ("non_finite", "NaN or infinite"),
            "blip.wav": ("too_short", "too short: 0.020 s (320 samples), below data.min_seconds=0.05"),
            "silence.wav": ("silent", "silent: peak -inf dBFS, below data.silence_dbfs=-60.0"),
            "notes.txt": ("not_audio", "not an audio file extension"),
            "loose.wav": ("outside_class", "not inside a class folder")}


def test_builds_cache_and_skips_every_bad_file(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "audio")
    # usable odd inputs: multichannel, 96 kHz, a short clip that gets padded, a non-ASCII name
    soundfile.write(root / "flute" / "stereo_96k.wav",
                    np.stack([clip(2.0, 96000, 880.0, 7)] * 2, 1), 96000)
    soundfile.write(root / "noise" / "kurz_ß_音.wav", clip(0.7, 16000, None, 8), 16000)
    broken = add_broken_files(root)
    report = prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    cache_dir = tmp_path / "cache"

    skipped = {Path(row["path"]).name: (row["kind"], row["reason"])
               for row in read_csv(cache_dir / "skipped.csv")}
    assert set(skipped) == set(broken)
    for name, (kind, reason) in broken.items():
        assert skipped[name][0] == kind and reason in skipped[name][1], (name, skipped[name])
    assert report.skipped == len(broken)

    rows = read_csv(cache_dir / "index.csv")
    sources = {row["source"] for row in rows}
    assert "noise/kurz_ß_音.wav" in sources and "flute/stereo_96k.wav" in sources
    assert len(sources) == 3 * 5 + 2
    features = np.load(cache_dir / "features.npy", mmap_mode="r")
    assert features.dtype == np.float16 and features.shape == (len(rows), 64, 63)
    assert np.isfinite(features).all()
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert meta["class_names"] == sorted(CLASSES)
    assert meta["input_shape"] == [1, 64, 63] and len(meta["mean"]) == 64
    assert meta["hop_seconds"] == 0.5 and meta["sample_rate"] == 16000
    assert (cache_dir / "examples.png").stat().st_size > 10_000
    # 17 usable + 11 skipped files: 39% skipped, so the summary warns, grouped by kind
    assert report.files == 28 and ("skipped files: 11 of 28 (hidden 2, non_finite 2, undecodable 2, empty 1, "
                                   "not_audio 1, outside_class 1, silent 1, too_short 1); each file") in report.summary()
    assert report.skipped_kinds == {"hidden": 2, "undecodable": 2, "empty": 1, "non_finite": 2,
                                    "too_short": 1, "silent": 1, "not_audio": 1,
                                    "outside_class": 1}
    warning = report.skip_warning()
    assert warning.startswith("WARNING: 11 of 28 files (39%) were skipped:")
    assert "2 of 28 files (7%) cannot be decoded: convert them" in warning
    assert "1 of 28 files (4%) are shorter than data.min_seconds=0.05: lower it" in warning
    assert "1 of 28 files (4%) are silent (peak below data.silence_dbfs=-60.0)" in warning
    assert report.summary().endswith(warning)
    lines = report.summary().splitlines()
    for row in read_csv(cache_dir / "skipped.csv"):  # each problem file named with its reason
        assert (f"  {row['path']}: {row['reason']}" in lines) == (row["kind"] != "hidden"), row
    monkeypatch.setattr("nas.data.report.SHOWN_SKIPS", 4)
    assert f"  ... and 5 more in {cache_dir / 'skipped.csv'}" in report.summary().splitlines()


def test_a_search_that_builds_its_cache_logs_what_prepare_would_print(tmp_path, caplog):
    """melnas-search and melnas-cv build a missing cache themselves: the skipped files are
    said in their log, not only in skipped.csv; a reused cache is not reported again."""
    root = make_folder(tmp_path / "audio")
    broken = add_broken_files(root)
    with caplog.at_level(logging.INFO, logger="nas.data.prepare"):
        report = prepare_for_run(data_cfg(root, tmp_path / "cache"), progress=False)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"skipped files: {len(broken)} of {report.files}" in logged and "skipped.csv" in logged
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nas.data.prepare"):
        prepare_for_run(data_cfg(root, tmp_path / "cache"), progress=False)
    assert "skipped files" not in "\n".join(r.getMessage() for r in caplog.records)


def test_no_recording_in_two_splits_and_stats_from_train(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=7)
    prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    rows = read_csv(tmp_path / "cache" / "index.csv")
    splits_of = defaultdict(set)
    for row in rows:
        splits_of[row["source"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    per_class = defaultdict(lambda: defaultdict(int))
    for source, (split,) in splits_of.items():
        per_class[source.split("/")[0]][split] += 1
    for name in CLASSES:  # 7 recordings at 0.7/0.15/0.15 -> 5/1/1
        assert dict(per_class[name]) == {"train": 5, "val": 1, "test": 1}
    features = np.load(tmp_path / "cache" / "features.npy").astype(np.float64)
    train = np.array([row["split"] == "train" for row in rows])
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    np.testing.assert_allclose(meta["mean"], features[train].mean(axis=(0, 2)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(meta["std"], features[train].std(axis=(0, 2)), rtol=1e-3, atol=1e-3)
    assert not np.allclose(meta["mean"], features.mean(axis=(0, 2)), atol=1e-3)


def test_reuse_and_rebuild(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=3)
    cache_dir = tmp_path / "cache"
    first = prepare_dataset(data_cfg(root, cache_dir), progress=False)
    assert not first.reused and "no complete cache" in first.summary()
    stamp = (cache_dir / "features.npy").stat().st_mtime_ns
    again = prepare_dataset(data_cfg(root, cache_dir, num_workers=2, batch_size=8), progress=False)
    assert again.reused and "reused" in again.summary()
    assert (cache_dir / "features.npy").stat().st_mtime_ns == stamp
    assert again.windows == first.windows

    changed = prepare_dataset(data_cfg(root, cache_dir, n_mels=32), progress=False)
    assert not changed.reused and "parameters or input files changed" in changed.summary()
    assert np.load(cache_dir / "features.npy", mmap_mode="r").shape[1] == 32

    soundfile.write(root / "bass" / "new.wav", clip(2.0, 16000, 110.0, 99), 16000)
    added = prepare_dataset(data_cfg(root, cache_dir, n_mels=32), progress=False)
    assert not added.reused
    assert "bass/new.wav" in {row["source"] for row in read_csv(cache_dir / "index.csv")}

    forced = prepare_dataset(data_cfg(root, cache_dir, n_mels=32, rebuild=True), progress=False)
    assert not forced.reused and "data.rebuild=true" in forced.summary()


def test_jobs_started_together_build_a_new_cache_once(tmp_path, monkeypatch):
    """A sweep's searches prepare one new cache at the same time: one builds it, the
    others wait and reuse it (each build used to clear the other's half-written files)."""
    root = make_folder(tmp_path / "audio", per_class=3)
    cfg = data_cfg(root, tmp_path / "cache")
    builds = []
    real_build = prepare_module._build

    def slow_build(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.5)  # both jobs have checked the cache before the first one finishes
        return real_build(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "_build", slow_build)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: prepare_dataset(cfg, progress=False), range(2)))
    assert len(builds) == 1
    assert sorted(report.reused for report in reports) == [False, True]
    assert reports[0].windows == reports[1].windows


def test_parallel_build_equals_serial(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=4)
    prepare_dataset(data_cfg(root, tmp_path / "one"), progress=False)
    prepare_dataset(data_cfg(root, tmp_path / "two", num_workers=2), progress=False)
    # Bit-equal by construction: the same file_features with one BLAS thread in the main
    # process and in each worker, same machine and libraries (other thread counts could
    # round differently: see test_windows_from_file_matches_cache_rows).
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "features.npy"),
                                  np.load(tmp_path / "two" / "features.npy"))
    assert (tmp_path / "one" / "index.csv").read_text() == (tmp_path / "two" / "index.csv").read_text()


def test_class_without_usable_file_stops_and_lists_reasons(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=2)
    (root / "voice").mkdir()
    (root / "voice" / "a.wav").write_text("garbage")
    (root / "voice" / "b.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"class\(es\) \['voice'\] have no usable recording"):
        prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    reasons = read_csv(tmp_path / "cache" / "skipped.csv")
    assert {Path(r["path"]).name for r in reasons} == {"a.wav", "b.wav"}
    assert not (tmp_path / "cache" / "meta.json").exists()


def test_copies_of_a_recording_land_in_its_split_and_are_listed(tmp_path, caplog):
    root = make_folder(tmp_path / "audio", per_class=8)
    originals = sorted((root / "flute").iterdir())
    (root / "flute" / "again").mkdir()
    for path in originals:  # a sub-folder holding the same files again
        shutil.copy(path, root / "flute" / "again" / path.name.upper())
    shutil.copy(originals[0], root / "bass" / "mislabelled.wav")
    samples, rate = soundfile.read(root / "noise" / "noise_0.wav")
    soundfile.write(root / "noise" / "noise_0_as.flac", samples, rate)  # the same audio, another format
    with caplog.at_level(logging.WARNING):
        prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    split = {row["path"]: row["split"] for row in read_csv(tmp_path / "cache" / "index.csv")}
    for path in originals:  # 8 copies: by chance all in their original's split ~0.5% of the time
        assert split[str(root / "flute" / "again" / path.name.upper())] == split[str(path)]
    listed = read_csv(tmp_path / "cache" / "duplicates.csv")
    assert len(listed) == 10  # 3 files of one audio (2 copies) + 8 pairs; the first listed is the original
    mislabelled = str(root / "bass" / "mislabelled.wav")
    assert sorted(row["path"] for row in listed if row["copy_of"] == mislabelled) == sorted(
        [str(root / "flute" / "again" / originals[0].name.upper()), str(originals[0])])
    assert all(row["label_of_original"] == "bass" for row in listed if row["copy_of"] == mislabelled)
    assert {"path": str(root / "noise" / "noise_0_as.flac"), "copy_of": str(root / "noise" / "noise_0.wav"),
            "label": "noise", "label_of_original": "noise"} in listed
    assert "10 recording(s) are copies of another (the same audio)" in caplog.text
    assert "2 of them carry another label than their original" in caplog.text


def test_a_single_class_is_refused_before_decoding(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=2)
    for extra in sorted(root.iterdir())[1:]:
        shutil.rmtree(extra)
    only = sorted(root.iterdir())[0].name
    with pytest.raises(DataError, match=rf"has 1 class \({only}\): a classifier needs at least 2 classes"):
        prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    assert not (tmp_path / "cache" / "features.npy").exists()


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "has no class sub-folders"),
    (lambda root: (root / "guitar").mkdir(parents=True), r"\['guitar'\] .* hold no audio files"),
])
def test_unusable_root_stops_with_what_to_do(tmp_path, setup, message):
    root = tmp_path / "audio"
    setup(root)
    with pytest.raises(DataError, match=message):
        prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)


def test_cache_inside_root_is_refused(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=1)
    with pytest.raises(DataError, match="is inside data.root"):
        prepare_dataset(data_cfg(root, root / "cache"), progress=False)


def write_manifest(path: Path, rows: list[tuple[str, ...]], header: str) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_manifest_with_groups_and_fixed_splits(tmp_path, monkeypatch):
    stems = tmp_path / "stems"
    rows = []
    for song in range(6):
        (stems / f"song{song}").mkdir(parents=True)
        for name, freq in (("bass", 110.0), ("lead", 660.0)):
            soundfile.write(stems / f"song{song}" / f"{name}.wav", clip(1.5, 16000, freq, song), 16000)
            split = "test" if song == 5 else ""
            rows.append((f"stems/song{song}/{name}.wav", name, f"song{song}", split))
    manifest = write_manifest(tmp_path / "list.csv", rows, "path,label,group,split")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths resolve against the manifest, not the cwd
    cfg = data_cfg(tmp_path / "ignored", tmp_path / "cache", manifest=str(manifest))
    report = prepare_dataset(cfg, progress=False)
    assert report.class_names == ["bass", "lead"]
    index = read_csv(tmp_path / "cache" / "index.csv")
    split_of_group = defaultdict(set)
    for row in index:
        split_of_group[row["group"]].add(row["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert split_of_group["song5"] == {"test"}
    assert index[0]["source"] == "stems/song0/bass.wav"


def test_manifest_naming_missing_files(tmp_path):
    soundfile.write(tmp_path / "a.wav", clip(1.0, 16000, 440.0, 0), 16000)
    manifest = write_manifest(tmp_path / "m.csv", [("a.wav", "x"), ("gone/b.wav", "y"),
                                                   ("c.flac", "y")], "path,label")
    with pytest.raises(DataError, match=r"names 2 file\(s\) that do not exist.*gone/b.wav, c.flac"):
        prepare_dataset(data_cfg(tmp_path, tmp_path / "cache", manifest=str(manifest)),
                        progress=False)


@pytest.mark.parametrize("header,rows,message", [
    ("file,label", [("a.wav", "x")], r"lacks column\(s\) \['path'\]"),
    ("path,label,split", [("a.wav", "x", "holdout")], "split 'holdout' is not one of"),
    ("path,label", [("a.wav", "")], "line 2: empty path or label"),
    ("path,label", [("a.wav", "x"), ("a.wav", "y")], "listed twice"),
])
def test_malformed_manifest(tmp_path, header, rows, message):
    soundfile.write(tmp_path / "a.wav", clip(1.0, 16000, 440.0, 0), 16000)
    manifest = write_manifest(tmp_path / "m.csv", rows, header)
    with pytest.raises(DataError, match=message):
        prepare_dataset(data_cfg(tmp_path, tmp_path / "cache", manifest=str(manifest)),
                        progress=False)


def test_entry_point_reports_data_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.prepare", f"data.root={tmp_path / 'missing'}",
         f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_entry_point_prints_summary(tmp_path):
    root = make_folder(tmp_path / "audio", per_class=3)
    result = subprocess.run(
        [sys.executable, "-m", "experiments.prepare", f"data.root={root}",
         f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
         "progress=false"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 classes, 9 recordings" in result.stdout
    assert str(tmp_path / "cache" / cache.EXAMPLES) in result.stdout


def word_like(seconds: float, rate: int, f0: float, seed: int) -> np.ndarray:
    """A spoken-word-like clip: harmonics of ``f0`` under a fast attack and a slow decay,
    plus a little noise, peaking near -10 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = np.minimum(t / 0.03, 1.0) * np.exp(-3.0 * t / seconds)
    signal = envelope * voice + 0.005 * rng.standard_normal(t.size)
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


DIGIT_SECONDS = (0.14, 0.2, 0.3, 0.4, 0.45, 0.6)  # the Free Spoken Digit Dataset's range


def make_digit_folder(root: Path) -> Path:
    """3 classes x 6 clips of 0.14-0.6 s at 8 kHz, like a spoken-digit data set."""
    for number, name in enumerate(("one", "two", "three")):
        (root / name).mkdir(parents=True)
        for i, seconds in enumerate(DIGIT_SECONDS):
            soundfile.write(root / name / f"{name}_{i}.wav",
                            word_like(seconds, 8000, 110.0 + 40 * number + 5 * i, 10 * number + i),
                            8000, subtype="PCM_16")
    return root


def test_short_clips_are_kept_with_the_defaults(tmp_path):
    root = make_digit_folder(tmp_path / "digits")
    dither = 3e-5 * np.random.default_rng(0).standard_normal(3200)  # about -80 dBFS peak
    soundfile.write(root / "two" / "silent.wav", dither.astype(np.float32), 8000, subtype="PCM_16")
    (root / "three" / "empty.wav").write_bytes(b"")
    report = prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)

    assert sum(report.totals(report.recordings).values()) == 3 * len(DIGIT_SECONDS)
    assert sum(report.totals(report.windows).values()) == 3 * len(DIGIT_SECONDS)  # one each
    assert report.padded == 3 * len(DIGIT_SECONDS)
    assert report.skipped_kinds == {"silent": 1, "empty": 1}
    assert report.skip_warning() == ""  # 2 of 20 files: not more than 10%
    assert "clip lengths: median 0.35 s" in report.summary()
    assert "18 of 18 shorter than data.window_seconds=1.0" in report.summary()
    kinds = {Path(row["path"]).name: row["kind"] for row in read_csv(tmp_path / "cache" / "skipped.csv")}
    assert kinds == {"silent.wav": "silent", "empty.wav": "empty"}


def test_mostly_too_short_files_get_a_loud_summary(tmp_path):
    root = make_digit_folder(tmp_path / "digits")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.prepare", f"data.root={root}",
         f"data.cache_dir={tmp_path / 'cache'}", "data.min_seconds=0.5",
         f"hydra.run.dir={tmp_path / 'run'}", "progress=false"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-3:]
    assert last[0] == "WARNING: 15 of 18 files (83%) were skipped:"
    assert last[1].startswith("WARNING:   15 of 18 files (83%) are shorter than "
                              "data.min_seconds=0.5: lower it")
    assert str(tmp_path / "cache" / cache.SKIPPED) in last[2]


def test_a_class_left_empty_names_the_skip_reasons(tmp_path):
    root = make_digit_folder(tmp_path / "digits")
    with pytest.raises(DataError, match=r"(?s)have no usable recording.*Skipped, by reason:\n"
                                        r"  18 of 18 files \(100%\) are shorter than "
                                        r"data.min_seconds=0.8"):
        prepare_dataset(data_cfg(root, tmp_path / "cache", min_seconds=0.8), progress=False)


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed (apt-get install espeak-ng); "
                           "test_short_clips_are_kept_with_the_defaults covers the same path")
def test_synthesised_spoken_digits_are_all_kept(tmp_path):
    """Speech that was not made for this code: espeak-ng saying digits in several voices
    and speeds, trimmed of silence and resampled to 8 kHz like the Free Spoken Digit
    Dataset."""
    root = tmp_path / "digits"
    for word in ("two", "five", "seven"):
        (root / word).mkdir(parents=True)
        for voice in ("en-us", "en-gb", "en-us+f3"):
            for speed in (120, 200):
                raw = tmp_path / "raw.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), word],
                               check=True, capture_output=True, timeout=60)
                signal, rate = soundfile.read(raw, dtype="float32")
                loud = np.flatnonzero(np.abs(signal) > 0.01 * np.abs(signal).max())
                speech = soxr.resample(signal[loud[0] : loud[-1] + 1], rate, 8000)
                soundfile.write(root / word / f"{voice}_{speed}.wav", speech, 8000)
    lengths = [soundfile.info(path).duration for path in root.rglob("*.wav")]
    assert max(lengths) < 1.0 and min(lengths) < 0.5
    report = prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    assert report.skipped == 0
    assert sum(report.totals(report.recordings).values()) == len(lengths) == 18


def test_complete_cache_is_used_when_root_is_gone(tmp_path, caplog):
    root = make_folder(tmp_path / "audio", per_class=2)
    built = prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    shutil.rmtree(root)
    with caplog.at_level(logging.WARNING, logger="nas.data.prepare"):
        used = prepare_dataset(data_cfg(root, tmp_path / "cache"), progress=False)
    expected = (f"inputs were not re-checked: data.root={root} is missing; using the complete "
                f"cache in {tmp_path / 'cache'}")
    assert expected in caplog.text and expected in used.summary()
    assert used.reused and used.windows == built.windows and used.files == built.files

    with pytest.raises(DataError, match=r"data.root=.* is missing, and the cache .* was built "
                                        r"with other settings \(n_mels=64 there, 32 here\)"):
        prepare_dataset(data_cfg(root, tmp_path / "cache", n_mels=32), progress=False)
    with pytest.raises(DataError, match="does not exist"):  # a rebuild needs the inputs
        prepare_dataset(data_cfg(root, tmp_path / "cache", rebuild=True), progress=False)
