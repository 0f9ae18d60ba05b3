"""data.format readers on tiny copies of each standard data set (tests/format_fixtures):
official test files land in test, groups never cross splits, folds choose the splits,
options are checked, and the data card is written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nas.data import cache
from nas.data.dataset import open_prepared
from nas.data.errors import DataError
from nas.data.folds import fold_view
from nas.data.prepare import prepare_dataset
from tests import format_fixtures as fx

CONF = Path(__file__).resolve().parents[1] / "conf"


def prepare(root: Path, cache_dir: Path, *overrides: str, progress: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=[
            f"data.root={root}", f"data.cache_dir={cache_dir}", "data.num_workers=0",
            "data.n_mels=32", *overrides])
    return prepare_dataset(cfg.data, progress=progress)


def recordings(cache_dir: Path) -> dict[str, dict[str, str]]:
    """source -> {label, split, group, fold} from index.csv."""
    with (cache_dir / cache.INDEX).open(newline="", encoding="utf-8") as handle:
        return {row["source"]: row for row in csv.DictReader(handle)}


def assert_groups_in_one_split(rows: dict[str, dict[str, str]]) -> None:
    splits_of = defaultdict(set)
    for row in rows.values():
        splits_of[row["group"]].add(row["split"])
    crossing = {group: s for group, s in splits_of.items() if len(s) > 1}
    assert not crossing


def skipped(cache_dir: Path) -> dict[str, str]:
    with (cache_dir / cache.SKIPPED).open(newline="", encoding="utf-8") as handle:
        return {Path(row["path"]).name: row["kind"] for row in csv.DictReader(handle)}


def test_esc50_folds_and_groups(tmp_path):
    base = fx.make_esc50(tmp_path)
    report = prepare(base, tmp_path / "cache", "data.format=esc50")
    rows = recordings(tmp_path / "cache")
    assert len(rows) == 45 and report.class_names == ["dog", "pig", "rooster"]
    assert {r["split"] for r in rows.values() if r["fold"] == "5"} == {"test"}  # default: last
    assert all(r["split"] != "test" for r in rows.values() if r["fold"] != "5")
    assert {r["split"] for r in rows.values()} == {"train", "val", "test"}
    assert_groups_in_one_split(rows)
    assert rows["audio/1-100010-B-0.wav"]["group"] == "100010"
    card = json.loads((tmp_path / "cache" / cache.CARD_JSON).read_text())
    assert card["folds"] == {"folds": [1, 2, 3, 4, 5], "test_fold": 5, "val_fold": None}
    assert card["classes"]["dog"]["test"]["recordings"] == 3
    assert (tmp_path / "cache" / cache.CARD_MD).read_text().startswith("# Data card")


def test_esc50_test_and_val_fold_and_esc10(tmp_path):
    base = fx.make_esc50(tmp_path)
    prepare(base, tmp_path / "c", "data.format=esc50", "data.test_fold=2", "data.val_fold=3")
    rows = recordings(tmp_path / "c")
    assert {r["fold"] for r in rows.values() if r["split"] == "test"} == {"2"}
    assert {r["fold"] for r in rows.values() if r["split"] == "val"} == {"3"}
    # ESC-10 through the config group; the fingerprint includes the option: a rebuild
    report = prepare(base, tmp_path / "c", "data/format=esc50", "data.format.esc10=true",
                     "data.test_fold=2", "data.val_fold=3")
    assert not report.reused and report.class_names == ["dog", "rooster"]
    kinds = skipped(tmp_path / "c")
    assert list(kinds.values()).count("excluded") == 15
    assert "left out by data.format options" in report.summary()
    assert "WARNING: 15" not in report.summary()  # excluded files are not problems


def test_esc50_from_the_folder_above_and_through_the_console(tmp_path):
    fx.make_esc50(tmp_path / "downloads")
    out = subprocess.run(
        [sys.executable, "-m", "experiments.prepare", "data.format=esc50",
         f"data.root={tmp_path / 'downloads'}", f"data.cache_dir={tmp_path / 'cache'}",
         "data.num_workers=0", "data.n_mels=32", "progress=false",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=CONF.parent, check=False)
    assert out.returncode == 0, out.stderr
    assert "format: esc50" in out.stdout and "groups" in out.stdout
    assert "test fold 5" in out.stdout


def test_fold_errors_name_the_setting(tmp_path):
    base = fx.make_esc50(tmp_path)
    with pytest.raises(DataError, match=r"data.test_fold=7 is not a fold.*\[1, 2, 3, 4, 5\]"):
        prepare(base, tmp_path / "c", "data.format=esc50", "data.test_fold=7")
    with pytest.raises(DataError, match="data.val_fold=2 is also the test fold"):
        prepare(base, tmp_path / "c", "data.format=esc50", "data.test_fold=2",
                "data.val_fold=2")
    with pytest.raises(DataError, match="has no folds"):
        prepare(fx.make_gtzan(tmp_path), tmp_path / "g", "data.format=gtzan",
                "data.test_fold=1")
    with pytest.raises(DataError, match=r"data.format.esc11 is not an option.*\['esc10'\]"):
        prepare(base, tmp_path / "c", "data/format=esc50", "+data.format.esc11=true")
    with pytest.raises(DataError, match="data.format='esc51' is unknown.*esc50"):
        prepare(base, tmp_path / "c", "data.format=esc51")
    with pytest.raises(DataError, match="does not look like UrbanSound8K"):
        prepare(base, tmp_path / "c", "data.format=urbansound8k")


def test_urbansound8k_folds(tmp_path):
    base = fx.make_urbansound8k(tmp_path)
    prepare(base, tmp_path / "c", "data.format=urbansound8k", "data.test_fold=4")
    rows = recordings(tmp_path / "c")
    assert len(rows) == 45
    assert {s for s, r in rows.items() if r["split"] == "test"} == \
        {s for s in rows if s.startswith("audio/fold4/")}
    assert rows["audio/fold3/7303-3-0-1.wav"]["group"] == "7303"
    assert_groups_in_one_split(rows)


@pytest.mark.parametrize("task", ["all", "commands"])
def test_speech_commands_lists_speakers_and_tasks(tmp_path, task):
    base = fx.make_speech_commands(tmp_path)
    report = prepare(base, tmp_path / "c", "data/format=speech_commands",
                     f"data.format.task={task}")
    rows = recordings(tmp_path / "c")
    listed = (base / "testing_list.txt").read_text().split()
    assert {s for s, r in rows.items() if r["split"] == "test" and r["label"] != "silence"} \
        == set(listed)
    validation = (base / "validation_list.txt").read_text().split()
    assert all(rows[s]["split"] == "val" for s in validation)
    assert rows["yes/0a7c2a8d_nohash_0.wav"]["group"] == "0a7c2a8d"
    assert_groups_in_one_split(rows)
    kinds = skipped(tmp_path / "c")
    assert kinds["README.md"] == "not_audio"
    if task == "all":
        assert len(report.class_names) == 12 and "cat" in report.class_names
        assert [kinds[name] for name in fx.SC_NOISE] == ["excluded"] * 3
    else:
        assert report.class_names == sorted(fx.SC_WORDS[:10] + ["unknown", "silence"])
        assert rows["cat/0a7c2a8d_nohash_0.wav"]["label"] == "unknown"
        silence = [r["split"] for r in rows.values() if r["label"] == "silence"]
        assert sorted(silence) == ["test", "train", "val"]  # one noise file each


@pytest.mark.parametrize("kaggle", [False, True])
def test_gtzan_original_and_kaggle_layout(tmp_path, kaggle):
    base = fx.make_gtzan(tmp_path, kaggle=kaggle)
    report = prepare(tmp_path, tmp_path / "c", "data.format=gtzan")
    assert report.class_names == fx.GTZAN_GENRES
    rows = recordings(tmp_path / "c")
    assert len(rows) == 18 and {r["split"] for r in rows.values()} == {"train", "val", "test"}
    assert_groups_in_one_split(rows)
    assert base.exists()


def test_nsynth_archives_are_the_splits(tmp_path):
    fx.make_nsynth(tmp_path)
    report = prepare(tmp_path, tmp_path / "c", "data.format=nsynth")
    rows = recordings(tmp_path / "c")
    assert report.class_names == fx.NSYNTH_FAMILIES
    test_notes = json.loads((tmp_path / "nsynth-test" / "examples.json").read_text())
    assert {s for s, r in rows.items() if r["split"] == "test"} == \
        {f"nsynth-test/audio/{note}.wav" for note in test_notes}
    assert {r["split"] for r in rows.values() if r["source"].startswith("nsynth-valid")} \
        == {"val"}
    assert_groups_in_one_split(rows)
    prepare(tmp_path, tmp_path / "a", "data/format=nsynth", "data.format.sources=[acoustic]")
    kept = recordings(tmp_path / "a")
    assert kept and all("_acoustic_" in source for source in kept)
    assert set(skipped(tmp_path / "a").values()) == {"excluded"}


def test_fsdd_official_and_speaker_split(tmp_path):
    base = fx.make_fsdd(tmp_path)
    prepare(base, tmp_path / "c", "data.format=fsdd")
    rows = recordings(tmp_path / "c")
    for source, row in rows.items():
        index = int(Path(source).stem.split("_")[2])
        assert row["split"] == ("test" if index <= 4 else "val" if index <= 9 else "train")
    report = prepare(base, tmp_path / "s", "data/format=fsdd", "data.format.split=speaker")
    rows = recordings(tmp_path / "s")
    assert_groups_in_one_split(rows)
    assert {r["group"] for r in rows.values() if r["split"] == "test"} == {"theo"}
    assert {r["group"] for r in rows.values() if r["split"] == "val"} < {"george", "jackson"}
    assert report.card["total"]["test"]["groups"] == 1


def test_manifest_folds_and_fold_view(tmp_path):
    rows = []
    for fold in (1, 2, 3):
        for label, pitch in (("a", 300.0), ("b", 900.0)):
            for take in range(3):
                name = f"{label}{fold}{take}.wav"
                fx.tone(tmp_path / "audio" / name, pitch=pitch, seed=take)
                rows.append([f"audio/{name}", label, f"{label}{fold}", fold])
    fx.write_csv(tmp_path / "m.csv", ["path", "label", "group", "fold"], rows)
    prepare(tmp_path, tmp_path / "c", f"data.manifest={tmp_path / 'm.csv'}")
    assert {r["fold"] for r in recordings(tmp_path / "c").values()
            if r["split"] == "test"} == {"3"}
    view = fold_view(tmp_path / "c", tmp_path / "view", test_fold=1)
    data = open_prepared(view)
    assert set(data.sources[data.rows("test")]) == {r[0] for r in rows if r[3] == 1}
    assert data.features.shape[0] == len(data.labels)
    assert not (view / cache.FEATURES).exists()


def test_card_warns_about_thin_classes(tmp_path):
    base = fx.make_esc50(tmp_path)
    report = prepare(base, tmp_path / "c", "data.format=esc50")
    assert any(w.startswith("3 class(es) have fewer than 5 recordings in test")
               and "dog (3)" in w for w in report.card["warnings"])
    assert "WARNING: 3 class(es) have fewer than 5 recordings in test" in report.summary()
