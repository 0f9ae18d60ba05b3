"""The bundled instrument data set: phrases rendered through SoundFonts to audio files.

``synthesize(settings)`` writes ``out_dir/<class>/<class>_<nnn>_<soundfont>_p<program>.flac``.
Every file has its own generator seeded by ``(seed, class, file number)``, so the set
is the same whatever the worker count. Files of a class cycle over the available
SoundFonts and, within one, over the class's General MIDI programs. A record beside
the folder (``<out_dir>.synth.json``, outside it so that ``prepare`` does not meet it)
says what was written: running again with the same settings reuses the files; other
settings replace them (and only them).

``synth.backing_db`` turns the solo phrases into a harder task, the predominant
instrument of a mix (as in IRMAS): every file gets a second phrase by another class,
mixed in at a level drawn from that range of decibels relative to the labelled
instrument's peak.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import soundfile

from nas.data.errors import DataError
from nas.data.parallel import available_cores, process_pool
from nas.data.phrases import BAND, InstrumentClass, Note, make_phrase
from nas.progress import progress_bar

GENERATOR_VERSION = 1  # bump when the same settings would give different audio
DRUM_BANK = 128
RELEASE_FADE_SECONDS = 0.08


def record_path(out_dir: str | Path) -> Path:
    """Where ``synthesize`` records what it wrote into ``out_dir``: beside the folder, as
    ``<out_dir>.synth.json`` (a folder without one was not written by melnas-synth)."""
    folder = Path(out_dir).expanduser().resolve()
    return folder.with_name(folder.name + ".synth.json")


def bundled_soundfont() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont that ships inside pretty_midi."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


@dataclass(frozen=True)
class SynthSettings:
    out_dir: Path = Path("data/instruments")
    seed: int = 0
    files_per_class: int = 288
    min_seconds: float = 1.5
    max_seconds: float = 2.5
    sample_rate: int = 22050
    classes: tuple[str, ...] | None = None  # None: every class of the band
    soundfonts: tuple[Path, ...] = ()  # the user's, on top of those found
    system_soundfonts: tuple[Path, ...] = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),)
    num_workers: int | None = None
    backing_db: tuple[float, float] | None = (-8.0, -2.0)  # None: solo phrases

    def __post_init__(self) -> None:
        if self.backing_db is not None and not (len(self.backing_db) == 2
                                                and self.backing_db[0] <= self.backing_db[1] <= 0):
            raise DataError(f"synth.backing_db={list(self.backing_db)}: expected null or [low, high] "
                             "in dB with low <= high <= 0 (the backing below the labelled instrument)")
        if self.backing_db is not None and len(self.instruments()) < 2:
            raise DataError("synth.backing_db needs at least two classes (the backing plays another class): "
                            "add classes, or set synth.backing_db=null for solo phrases")
        if self.files_per_class < 1:
            raise DataError(f"synth.files_per_class={self.files_per_class}: expected >= 1")
        if not 1.0 <= self.min_seconds <= self.max_seconds:
            raise DataError(f"synth.min_seconds={self.min_seconds}, max_seconds="
                             f"{self.max_seconds}: expected 1 <= min_seconds <= max_seconds")
        if self.sample_rate < 8000:
            raise DataError(f"synth.sample_rate={self.sample_rate}: expected >= 8000")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SynthSettings:
        classes = cfg.get("classes")
        backing = cfg.get("backing_db")
        return cls(
            out_dir=Path(cfg.get("out_dir", cls.out_dir)).expanduser(),
            seed=int(cfg.get("seed", cls.seed)),
            files_per_class=int(cfg.get("files_per_class", cls.files_per_class)),
            min_seconds=float(cfg.get("min_seconds", cls.min_seconds)),
            max_seconds=float(cfg.get("max_seconds", cls.max_seconds)),
            sample_rate=int(cfg.get("sample_rate", cls.sample_rate)),
            classes=None if classes is None else tuple(str(c) for c in classes),
            soundfonts=tuple(Path(p).expanduser() for p in cfg.get("soundfonts") or ()),
            system_soundfonts=tuple(Path(p) for p in cfg.get("system_soundfonts",
                                                             cls.system_soundfonts) or ()),
            num_workers=None if cfg.get("num_workers") is None else int(cfg["num_workers"]),
            backing_db=None if backing is None else tuple(float(db) for db in backing),
        )

    def instruments(self) -> tuple[InstrumentClass, ...]:
        known = {instrument.name: instrument for instrument in BAND}
        if self.classes is None:
            return BAND
        unknown = [name for name in self.classes if name not in known]
        if unknown or not self.classes:
            raise DataError(f"synth.classes={list(self.classes)}: unknown {unknown}; "
                             f"choose from {sorted(known)} (or null for all)")
        return tuple(known[name] for name in self.classes)


@dataclass(frozen=True)
class Part:
    """One instrument's phrase in a file: which class plays what, on which preset."""

    instrument: InstrumentClass
    soundfont: Path
    program: int
    style: str


@dataclass(frozen=True)
class FileSpec:
    """Everything that decides one output file."""

    path: Path
    instrument: InstrumentClass
    soundfont: Path
    program: int
    style: str
    seconds: float
    seed: tuple[int, ...]
    backing: Part | None = None
    backing_db: float = 0.0  # the backing's peak relative to the labelled part's


@dataclass
class SynthReport:
    out_dir: Path
    reused: bool
    soundfonts: list[Path]
    files: dict[str, int]  # class -> files
    minutes: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # warnings worth reading

    def summary(self) -> str:
        action = "reused (same settings; files already there)" if self.reused else \
            f"written in {self.seconds:.1f} s"
        lines = [f"instrument set {self.out_dir}: {action}",
                 f"{len(self.files)} classes, {sum(self.files.values())} files, "
                 f"{self.minutes:.1f} minutes of audio",
                 "soundfonts: " + ", ".join(str(p) for p in self.soundfonts)]
        lines += [f"  {name:<18}{count:>4} files" for name, count in self.files.items()]
        return "\n".join(lines + self.notes)


def find_soundfonts(settings: SynthSettings) -> list[Path]:
    """The bundled font, the system fonts that are installed, and the user's (which
    must exist and load)."""
    missing = [str(p) for p in settings.soundfonts if not p.is_file()]
    if missing:
        raise DataError(f"synth.soundfonts: {missing} not found; give paths of .sf2/.sf3 files")
    found = [bundled_soundfont()] + [p for p in settings.system_soundfonts if p.is_file()]
    fonts: list[Path] = []
    for path in found + list(settings.soundfonts):
        if path.resolve() not in [f.resolve() for f in fonts]:
            fonts.append(path)
    for path in fonts:
        _load_soundfont(str(path))  # a clear error now rather than in a worker
    return fonts


@lru_cache(maxsize=4)
def _load_soundfont(path: str) -> Any:
    from tinysoundfont import _tinysoundfont

    try:
        return _tinysoundfont.SoundFont(path)
    except Exception as error:  # noqa: BLE001 - the binding raises a bare Exception type
        raise DataError(f"cannot load SoundFont {path}: {error}") from error


def _has_preset(path: Path, program: int, drums: bool) -> bool:
    return _load_soundfont(str(path)).get_preset_name(DRUM_BANK if drums else 0,
                                                      program) != "<None>"


def _presets(instrument: InstrumentClass, fonts: Sequence[Path]) -> dict[Path, list[int]]:
    """The class's programs each SoundFont has (only the fonts that have any)."""
    per_font = {font: [p for p in instrument.programs if _has_preset(font, p, instrument.drums)]
                for font in fonts}
    if not any(per_font.values()):
        raise DataError(f"no SoundFont among {[str(f) for f in fonts]} has any program "
                        f"{list(instrument.programs)} for class {instrument.name!r}")
    return {font: programs for font, programs in per_font.items() if programs}


def _backing_part(instrument: InstrumentClass, others: Sequence[InstrumentClass],
                  presets: Mapping[str, dict[Path, list[int]]], rng: np.random.Generator) -> Part:
    """Another class than ``instrument``, on one of its presets, in one of its styles."""
    other = others[int(rng.integers(len(others)))]
    font, programs = list(presets[other.name].items())[int(rng.integers(len(presets[other.name])))]
    return Part(other, font, programs[int(rng.integers(len(programs)))], str(rng.choice(other.styles)))


def plan(settings: SynthSettings, fonts: Sequence[Path]) -> tuple[list[FileSpec], list[str]]:
    """The files to write (and notes about programs a SoundFont lacks)."""
    specs, notes = [], []
    instruments = settings.instruments()
    presets = {instrument.name: _presets(instrument, fonts) for instrument in instruments}
    for instrument in instruments:
        per_font = presets[instrument.name]
        usable = list(per_font)
        for font in fonts:
            if len(per_font.get(font, [])) < len(instrument.programs):
                lacking = sorted(set(instrument.programs) - set(per_font.get(font, [])))
                notes.append(f"note: {font.name} lacks program(s) {lacking} of "
                             f"{instrument.name}; using the others")
        others = [other for other in instruments if other.name != instrument.name]
        class_key = zlib.crc32(instrument.name.encode("utf-8"))
        for number in range(settings.files_per_class):
            seed = (settings.seed, class_key, number)
            rng = np.random.default_rng((*seed, 0))  # the plan's stream; the music's is 1
            font = usable[number % len(usable)]
            programs = per_font[font]
            program = programs[(number // len(usable)) % len(programs)]
            style = str(rng.choice(instrument.styles))
            seconds = float(rng.uniform(settings.min_seconds, settings.max_seconds))
            name = (f"{instrument.name}_{number:03d}_{_slug(font.stem)}_p{program:03d}.flac")
            backing, backing_db = None, 0.0
            if settings.backing_db is not None:  # drawn after the solo's draws: those stay as they were
                backing = _backing_part(instrument, others, presets, rng)
                backing_db = float(rng.uniform(*settings.backing_db))
            specs.append(FileSpec(settings.out_dir / instrument.name / name, instrument, font,
                                  program, style, seconds, seed, backing, backing_db))
    return specs, notes


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower()) or "soundfont"


def render(notes: Sequence[Note], soundfont: Path, program: int, drums: bool,
           seconds: float, sample_rate: int) -> np.ndarray:
    """Play ``notes`` on ``program`` of ``soundfont``: ``float32 [round(seconds * rate)]``
    (the tail is faded out; peak not normalised)."""
    from tinysoundfont import _tinysoundfont

    font = _load_soundfont(str(soundfont))
    font.set_output(_tinysoundfont.OutputMode.Mono, sample_rate, 0.0)
    _silence(font, sample_rate)
    channel = 9 if drums else 0
    font.channel_set_bank(channel, DRUM_BANK if drums else 0)
    font.channel_set_preset_number(channel, program, drums)
    events = sorted([(round(n.start * sample_rate), 1, n.key, n.velocity) for n in notes]
                    + [(round((n.start + n.duration) * sample_rate), 0, n.key, 0.0)
                       for n in notes])  # at one instant, note-offs (0) before note-ons
    total = round(seconds * sample_rate)
    audio = np.zeros(total, dtype=np.float32)
    position = 0
    for when, is_on, key, velocity in events:
        when = min(when, total)
        if when > position:
            font.render(audio[position:when].view(np.uint8))
            position = when
        if is_on:
            font.channel_note_on(channel, key, velocity)
        else:
            font.channel_note_off(channel, key)
    if position < total:
        font.render(audio[position:].view(np.uint8))
    fade = min(total, round(RELEASE_FADE_SECONDS * sample_rate))
    audio[total - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio


def _silence(font: Any, sample_rate: int) -> None:
    """End every voice of the previous file and reset the channels, so a file sounds the
    same whichever files the process rendered before it (``reset`` alone lets voices
    ring on, and a stopped voice still fades out over a few milliseconds)."""
    for channel in range(16):
        font.channel_sounds_off(channel)
    scratch = np.zeros(sample_rate // 10, dtype=np.float32)
    for _ in range(50):
        font.render(scratch.view(np.uint8))
        if not scratch.any():
            break
        scratch[:] = 0.0
    font.reset()


def synthesize_file(spec: FileSpec, sample_rate: int) -> float:
    """Compose, render, level and write one file; returns its duration in seconds."""
    rng = np.random.default_rng((*spec.seed, 1))
    audio, peak = _render_part(Part(spec.instrument, spec.soundfont, spec.program, spec.style),
                               spec.seconds, sample_rate, rng)
    if spec.backing is not None:
        backing, backing_peak = _render_part(spec.backing, spec.seconds, sample_rate,
                                             np.random.default_rng((*spec.seed, 2)))
        audio = audio + backing * (peak * 10 ** (spec.backing_db / 20) / backing_peak)
        peak = float(np.max(np.abs(audio)))
    level = 10 ** (rng.uniform(-14.0, -2.0) / 20)  # varied recording levels
    audio = audio * (level / peak)
    audio += rng.normal(0.0, 10 ** (rng.uniform(-75.0, -55.0) / 20), audio.size).astype(np.float32)
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(spec.path, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC",
                    subtype="PCM_16")
    return audio.size / sample_rate


def _render_part(part: Part, seconds: float, sample_rate: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A phrase of ``part`` and its peak (refused when silent)."""
    notes = make_phrase(part.style, part.instrument, seconds, rng)
    audio = render(notes, part.soundfont, part.program, part.instrument.drums, seconds, sample_rate)
    peak = float(np.max(np.abs(audio)))
    if not np.isfinite(peak) or peak < 1e-4:
        raise RuntimeError(f"silent render: {part.soundfont.name} program {part.program} "
                           f"({part.instrument.name}, {part.style})")
    return audio, peak


def _synthesize_task(task: tuple[FileSpec, int]) -> float:
    return synthesize_file(*task)


def _audible_settings(settings: SynthSettings) -> dict[str, Any]:
    """The settings that change the audio (not where it goes, nor how many processes)."""
    return {key: value for key, value in asdict(settings).items()
            if key not in ("num_workers", "out_dir", "soundfonts", "system_soundfonts")
            and not (key == "backing_db" and value is None)}  # solo sets keep their fingerprint


def _fingerprint(settings: SynthSettings, fonts: Sequence[Path]) -> str:
    identity = _audible_settings(settings)
    identity["generator_version"] = GENERATOR_VERSION
    identity["fonts"] = [(f.name, f.stat().st_size) for f in fonts]
    identity["instruments"] = [asdict(i) for i in settings.instruments()]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def synthesize(settings: SynthSettings, *, progress: bool = True) -> SynthReport:
    """Write the instrument set to ``settings.out_dir`` (or reuse it when unchanged)."""
    started = time.perf_counter()
    fonts = find_soundfonts(settings)
    specs, notes = plan(settings, fonts)
    fingerprint = _fingerprint(settings, fonts)
    record = record_path(settings.out_dir)
    previous = _read_record(record)
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.instrument.name] = counts.get(spec.instrument.name, 0) + 1
    if previous.get("fingerprint") == fingerprint and all(s.path.is_file() for s in specs):
        return SynthReport(settings.out_dir, True, fonts, counts,
                           previous.get("seconds", 0.0) / 60, notes=notes)
    for old in previous.get("files", []):
        (settings.out_dir / old).unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    tasks = [(spec, settings.sample_rate) for spec in specs]
    workers = min(available_cores() if settings.num_workers is None else settings.num_workers,
                  len(tasks))
    bar = progress_bar(total=len(tasks), desc="melnas-synth", unit="file", enabled=progress)
    if workers <= 1:
        durations = []
        for task in tasks:
            durations.append(_synthesize_task(task))
            bar.update()
    else:
        with process_pool(workers, preload=__name__) as pool:
            durations = []
            for duration in pool.imap(_synthesize_task, tasks, chunksize=4):
                durations.append(duration)
                bar.update()
    bar.close()
    total_seconds = float(sum(durations))
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({
        "fingerprint": fingerprint,
        "settings": _audible_settings(settings),
        "seconds": total_seconds,
        "soundfonts": [str(f) for f in fonts],
        "files": [spec.path.relative_to(settings.out_dir).as_posix() for spec in specs],
    }, indent=1), encoding="utf-8")
    return SynthReport(settings.out_dir, False, fonts, counts, total_seconds / 60,
                       time.perf_counter() - started, notes)


def differences_from_record(settings: SynthSettings) -> list[str] | None:
    """How the set in ``settings.out_dir`` differs from what ``settings`` would write, one
    line per differing setting (``"files_per_class: 288 there, 96 asked"``): ``[]`` when
    it was written with them (SoundFonts included), ``None`` when no melnas-synth set is there."""
    record = _read_record(record_path(settings.out_dir))
    if not record:
        return None
    fonts = find_soundfonts(settings)
    if record.get("fingerprint") == _fingerprint(settings, fonts):
        return []
    if "settings" not in record:
        return ["its settings are not recorded (an older melnas-synth wrote it)"]
    asked = json.loads(json.dumps(_audible_settings(settings), default=str))  # tuples as the record has them
    recorded = record["settings"]
    differing = [f"{key}: {recorded.get(key)} there, {asked.get(key)} asked"
                 for key in sorted({*recorded, *asked}) if recorded.get(key) != asked.get(key)]
    return differing or [f"soundfonts: {record.get('soundfonts')} there, {[str(f) for f in fonts]} found"]


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
