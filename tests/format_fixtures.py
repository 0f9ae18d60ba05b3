"""Tiny copies of standard data sets, laid out as their archives unpack, with their
metadata files, columns and keys as the data sets document them; the audio is a few
short generated tones (one pitch per class), so the copies prepare in seconds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(path: Path, *, pitch: float, seconds: float = 1.0, rate: int = 16000,
         seed: int = 0, fmt: str | None = None) -> None:
    """A tone at ``pitch`` Hz (a little detuned per ``seed``) with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * pitch * (1 + 0.01 * (seed % 7)) * t)
    signal += 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal.astype(np.float32), rate, format=fmt)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


ESC_CLASSES = [("dog", 0, True), ("rooster", 1, True), ("pig", 2, False)]


def make_esc50(parent: Path) -> Path:
    """``ESC-50-master/`` with ``meta/esc50.csv`` and ``audio/{fold}-{src}-{take}-{target}.wav``:
    3 classes (2 in ESC-10) x 5 folds x 2 source clips, two takes (A, B) of the first."""
    base = parent / "ESC-50-master"
    rows = []
    for category, target, esc10 in ESC_CLASSES:
        for fold in range(1, 6):
            for clip in range(2):
                src = f"{100000 + 1000 * target + 10 * fold + clip}"
                for take in ("A", "B") if clip == 0 else ("A",):
                    name = f"{fold}-{src}-{take}-{target}.wav"
                    tone(base / "audio" / name, pitch=220.0 * (target + 1), seconds=1.0,
                         seed=fold * 10 + clip)
                    rows.append([name, fold, target, category, esc10, src, take])
    write_csv(base / "meta" / "esc50.csv",
              ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    (base / "README.md").write_text("# ESC-50\n")
    return base


US8K_CLASSES = [(0, "air_conditioner"), (3, "dog_bark"), (6, "gun_shot")]


def make_urbansound8k(parent: Path) -> Path:
    """``UrbanSound8K/`` with ``metadata/UrbanSound8K.csv`` and ``audio/fold{1..10}/``:
    3 classes x 10 folds, one Freesound recording per class and fold, cut into 1-2 slices."""
    base = parent / "UrbanSound8K"
    rows = []
    for class_id, name in US8K_CLASSES:
        for fold in range(1, 11):
            fs_id = 7000 + 100 * class_id + fold
            for slice_id in range(1 + fold % 2):
                file = f"{fs_id}-{class_id}-0-{slice_id}.wav"
                tone(base / "audio" / f"fold{fold}" / file, pitch=200.0 * (class_id + 1),
                     seconds=0.8, rate=22050, seed=fold + slice_id)
                rows.append([file, fs_id, 0.5 * slice_id, 0.5 * slice_id + 0.8, 1, fold,
                             class_id, name])
    write_csv(base / "metadata" / "UrbanSound8K.csv",
              ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID",
               "class"], rows)
    (base / "UrbanSound8K_README.txt").write_text("UrbanSound8K\n")
    return base


SC_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
            "bed", "cat"]
SC_SPEAKERS = ["0a7c2a8d", "0b09edd3", "1a892463", "2bfe70ef", "3c257192", "c50f55b8"]
SC_NOISE = ["white_noise.wav", "pink_noise.wav", "running_tap.wav"]


def make_speech_commands(parent: Path) -> Path:
    """``<word>/<speaker>_nohash_<n>.wav`` for 12 words (10 commands + 2 others) and 6
    speakers, ``validation_list.txt`` (speaker 5) and ``testing_list.txt`` (speaker 6),
    ``_background_noise_/`` with 3 noise files and its README.md."""
    base = parent / "speech_commands_v0.02"
    val, test = [], []
    for w, word in enumerate(SC_WORDS):
        for s, speaker in enumerate(SC_SPEAKERS):
            name = f"{word}/{speaker}_nohash_0.wav"
            tone(base / name, pitch=150.0 + 60 * w, seconds=1.0, seed=s)
            (val if s == 4 else test if s == 5 else []).append(name)
    (base / "validation_list.txt").write_text("\n".join(val) + "\n")
    (base / "testing_list.txt").write_text("\n".join(test) + "\n")
    rng = np.random.default_rng(0)
    for name in SC_NOISE:
        path = base / "_background_noise_" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000)
    (base / "_background_noise_" / "README.md").write_text("noise\n")
    (base / "LICENSE").write_text("CC-BY-4.0\n")
    return base


GTZAN_GENRES = ["blues", "classical", "metal"]


def make_gtzan(parent: Path, *, kaggle: bool = False) -> Path:
    """``genres/<genre>/<genre>.0000N.au`` (the original archive), or Kaggle's
    ``Data/genres_original/<genre>/<genre>.0000N.wav`` next to ``images_original/``."""
    base = parent / ("Data" if kaggle else "genres")
    audio = base / "genres_original" if kaggle else base
    for g, genre in enumerate(GTZAN_GENRES):
        for i in range(6):
            suffix, fmt = (".wav", None) if kaggle else (".au", "AU")
            tone(audio / genre / f"{genre}.{i:05d}{suffix}", pitch=180.0 * (g + 1),
                 seconds=1.5, rate=22050, seed=i, fmt=fmt)
        if kaggle:
            (base / "images_original" / genre).mkdir(parents=True, exist_ok=True)
            (base / "images_original" / genre / f"{genre}00000.png").write_bytes(b"\x89PNG")
    if kaggle:
        write_csv(base / "features_30_sec.csv", ["filename", "length", "label"], [])
    return base


NSYNTH_FAMILIES = ["bass", "guitar", "mallet"]
NSYNTH_SOURCES = ["acoustic", "electronic", "synthetic"]


def make_nsynth(parent: Path) -> Path:
    """``nsynth-{train,valid,test}/examples.json`` + ``audio/<note_str>.wav``; train
    instruments differ from valid/test ones, which share theirs (as in NSynth)."""
    for split, instruments in (("train", range(0, 3)), ("valid", range(3, 4)),
                               ("test", range(3, 4))):
        folder = parent / f"nsynth-{split}"
        examples = {}
        for f, family in enumerate(NSYNTH_FAMILIES):
            for number in instruments:
                source = NSYNTH_SOURCES[(f + number) % 3]
                instrument_str = f"{family}_{source}_{number:03d}"
                pitches = (40, 52, 64, 76) if split == "train" else \
                    (41, 53, 65) if split == "valid" else (42, 54, 66)
                for pitch in pitches:
                    note_str = f"{instrument_str}-{pitch:03d}-100"
                    tone(folder / "audio" / f"{note_str}.wav", pitch=110.0 * (f + 1),
                         seconds=1.0, seed=pitch)
                    examples[note_str] = {
                        "note": 1000 * f + pitch, "note_str": note_str,
                        "instrument": 10 * f + number, "instrument_str": instrument_str,
                        "pitch": pitch, "velocity": 100, "sample_rate": 16000,
                        "qualities": [0] * 10, "qualities_str": [],
                        "instrument_family": f, "instrument_family_str": family,
                        "instrument_source": NSYNTH_SOURCES.index(source),
                        "instrument_source_str": source,
                    }
        (folder / "examples.json").write_text(json.dumps(examples, indent=2))
    return parent


FSDD_SPEAKERS = ["george", "jackson", "theo"]


def make_fsdd(parent: Path) -> Path:
    """``free-spoken-digit-dataset-master/recordings/{digit}_{speaker}_{index}.wav`` at
    8 kHz: 3 digits x 3 speakers x indices 0-11."""
    base = parent / "free-spoken-digit-dataset-master"
    for digit in range(3):
        for s, speaker in enumerate(FSDD_SPEAKERS):
            for index in range(12):
                tone(base / "recordings" / f"{digit}_{speaker}_{index}.wav",
                     pitch=300.0 * (digit + 1) + 7 * s, seconds=0.4, rate=8000, seed=index)
    (base / "README.md").write_text("# Free Spoken Digit Dataset\n")
    return base
