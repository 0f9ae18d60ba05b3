"""melnas-synth: phrases in register, SoundFont handling, a small deterministic run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hydra import compose, initialize_config_dir

from nas.data.errors import DataError
from nas.data.phrases import BAND, STYLES, make_phrase
from nas.data.synth import SynthSettings, bundled_soundfont, find_soundfonts, plan, synthesize

CONF = Path(__file__).resolve().parents[1] / "conf"


def small(out_dir: Path, **changes) -> SynthSettings:
    """A few short solo files (the mix is asked for explicitly where a test is about it)."""
    values = dict(out_dir=out_dir, files_per_class=2, min_seconds=1.5, max_seconds=2.0,
                  sample_rate=16000, classes=("piano", "drums", "bass"), system_soundfonts=(),
                  num_workers=1, backing_db=None)
    return SynthSettings(**{**values, **changes})


@pytest.mark.parametrize("instrument", BAND, ids=lambda i: i.name)
def test_every_style_plays_in_register(instrument):
    for style in instrument.styles:
        for seed in range(5):
            notes = make_phrase(style, instrument, 4.0, np.random.default_rng(seed))
            assert len(notes) >= 3, (style, seed)
            keys = [note.key for note in notes]
            assert instrument.low <= min(keys) and max(keys) <= instrument.high, (style, keys)
            assert all(0 <= n.start < 4.0 and n.duration > 0 and 0 < n.velocity <= 1
                       for n in notes)


def test_a_phrase_that_comes_out_as_rests_only_is_drawn_again():
    """Brass file 157 of the 288-per-class set: its first melody (2.02 s, half notes at a
    slow tempo) was two rests, a silent file that stopped melnas-synth."""
    brass = next(i for i in BAND if i.name == "brass")
    seed = (0, zlib.crc32(b"brass"), 157, 1)
    notes = make_phrase("melody", brass, 2.016624030492795, np.random.default_rng(seed))
    assert notes and all(brass.low <= n.key <= brass.high for n in notes)


def test_band_has_ten_or_more_classes_with_several_programs():
    assert len(BAND) >= 10
    assert all(len(i.programs) >= 2 for i in BAND)
    assert set(STYLES) >= {s for i in BAND for s in i.styles}


def test_default_config_gives_twenty_minutes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="synth")
    settings = SynthSettings.from_config(cfg.synth)
    assert settings.out_dir == Path("data/instruments")
    mean_seconds = (settings.min_seconds + settings.max_seconds) / 2
    assert len(settings.instruments()) * settings.files_per_class * mean_seconds >= 20 * 60


def test_the_config_file_and_the_settings_class_give_one_default_set():
    """conf/synth.yaml and SynthSettings both state the defaults (the API is usable without
    Hydra); a change to one of them alone would make two different "bundled sets"."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="synth")
    assert SynthSettings.from_config(cfg.synth) == SynthSettings()


def test_plan_cycles_soundfonts_and_programs(tmp_path):
    user_font = tmp_path / "MyFont.sf2"
    shutil.copyfile(bundled_soundfont(), user_font)
    settings = small(tmp_path / "out", files_per_class=8, soundfonts=(user_font,))
    fonts = find_soundfonts(settings)
    assert fonts == [bundled_soundfont(), user_font]
    specs, _ = plan(settings, fonts)
    piano = [s for s in specs if s.instrument.name == "piano"]
    assert [s.soundfont for s in piano] == fonts * 4
    assert {s.program for s in piano} == {0, 1, 2, 3}
    assert all(s.path.parent.name == "piano" for s in piano)
    assert piano[1].path.name.startswith("piano_001_myfont_p")


def test_small_run_is_deterministic_and_reused(tmp_path):
    first = synthesize(small(tmp_path / "a"), progress=False)
    second = synthesize(small(tmp_path / "b", num_workers=2), progress=False)
    assert not first.reused and first.files == {"piano": 2, "drums": 2, "bass": 2}
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.flac"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.flac"))
    assert files_a == files_b and len(files_a) == 6
    for relative in files_a:
        audio_a, rate = soundfile.read(tmp_path / "a" / relative, dtype="float32")
        audio_b, _ = soundfile.read(tmp_path / "b" / relative, dtype="float32")
        np.testing.assert_array_equal(audio_a, audio_b)
        assert rate == 16000 and 1.5 <= audio_a.size / rate <= 2.0
        assert np.abs(audio_a).max() > 0.1  # levelled to -14..-2 dBFS, not silent
    assert 0.15 < first.minutes < 0.2
    again = synthesize(small(tmp_path / "a"), progress=False)
    assert again.reused and "reused" in again.summary()


def test_new_settings_replace_only_synth_files(tmp_path):
    out = tmp_path / "out"
    synthesize(small(out), progress=False)
    (out / "piano" / "my_take.wav").write_bytes(b"RIFF")
    synthesize(small(out, files_per_class=1, seed=5), progress=False)
    names = sorted(p.name for p in (out / "piano").iterdir())
    assert len(names) == 2 and "my_take.wav" in names


def test_seed_changes_the_music(tmp_path):
    synthesize(small(tmp_path / "a", classes=("bass",)), progress=False)
    synthesize(small(tmp_path / "b", classes=("bass",), seed=1), progress=False)
    a = soundfile.read(next((tmp_path / "a" / "bass").glob("*.flac")))[0]
    b = soundfile.read(next((tmp_path / "b" / "bass").glob("*.flac")))[0]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_bad_soundfonts_and_classes(tmp_path):
    with pytest.raises(DataError, match="not found"):
        find_soundfonts(small(tmp_path, soundfonts=(tmp_path / "nope.sf2",)))
    garbage = tmp_path / "garbage.sf2"
    garbage.write_bytes(b"RIFF0000sfbk" + b"\0" * 64)
    with pytest.raises(DataError, match="cannot load SoundFont"):
        find_soundfonts(small(tmp_path, soundfonts=(garbage,)))
    with pytest.raises(DataError, match="unknown \\['kazoo'\\]"):
        small(tmp_path, classes=("kazoo",)).instruments()


def test_backing_mixes_another_class_under_the_same_solo(tmp_path):
    solo, _ = plan(small(tmp_path / "solo"), [bundled_soundfont()])
    mixed, _ = plan(small(tmp_path / "mix", backing_db=(-8.0, -2.0)), [bundled_soundfont()])
    for a, b in zip(solo, mixed):  # the labelled part is drawn as before
        assert (a.path.name, a.program, a.style, a.seconds) == (b.path.name, b.program, b.style, b.seconds)
        assert a.backing is None and b.backing.instrument.name != b.instrument.name
        assert -8.0 <= b.backing_db <= -2.0
    synthesize(small(tmp_path / "solo"), progress=False)
    synthesize(small(tmp_path / "mix", backing_db=(-8.0, -2.0)), progress=False)
    for spec in mixed:
        solo_audio = soundfile.read(tmp_path / "solo" / spec.instrument.name / spec.path.name)[0]
        mix_audio = soundfile.read(spec.path)[0]
        assert solo_audio.shape == mix_audio.shape
        # each file is levelled to its own peak: compare shapes, not levels
        assert abs(np.corrcoef(solo_audio, mix_audio)[0, 1]) < 0.99, spec.path.name


def test_backing_range_is_checked():
    with pytest.raises(DataError, match="synth.backing_db"):
        small(Path("x"), backing_db=(-2.0, -8.0))
    with pytest.raises(DataError, match="synth.backing_db"):
        small(Path("x"), backing_db=(-3.0, 3.0))
    with pytest.raises(DataError, match="at least two classes"):
        small(Path("x"), classes=("bass",), backing_db=(-8.0, -2.0))


@pytest.mark.slow
def test_default_set_size_and_time(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="synth", overrides=[f"synth.out_dir={tmp_path}"])
    report = synthesize(SynthSettings.from_config(cfg.synth), progress=False)
    assert len(report.files) >= 10 and report.minutes >= 20
    assert sum(1 for _ in tmp_path.rglob("*.flac")) == sum(report.files.values())


def test_entry_point_writes_and_reports(tmp_path):
    command = [sys.executable, "-m", "experiments.synth", f"synth.out_dir={tmp_path / 'set'}",
               "synth.files_per_class=1", "synth.classes=[flute,drums]", "synth.num_workers=1",
               "synth.system_soundfonts=[]", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 classes, 2 files" in result.stdout
    assert len(list((tmp_path / "set").rglob("*.flac"))) == 2
    missing = subprocess.run(command + [f"synth.soundfonts=[{tmp_path / 'no.sf2'}]"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert "no.sf2" in missing.stderr and "Traceback" not in missing.stderr
