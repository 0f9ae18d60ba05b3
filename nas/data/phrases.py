"""Musical phrases for the bundled data set: notes, not sound.

Each band-instrument class plays what that instrument plays in a band, in its
register: melodies, block chords, arpeggios, strummed chords, bass lines or drum
grooves, over a random key, mode, tempo, chord progression, dynamics and articulation.
Everything is drawn from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (5, 3, 0, 4),
                (0, 3, 0, 4), (0, 6, 5, 4), (3, 4, 2, 5))

# General MIDI percussion keys (channel 10).
KICK, SNARE, SIDE_STICK, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 38, 37, 39, 42, 44, 46
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL = 49, 51, 53, 54, 56
TOMS = (50, 48, 47, 45, 43, 41)


PHRASE_ATTEMPTS = 20  # draws of a phrase before giving up on one with notes


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    duration: float  # seconds
    key: int  # MIDI key
    velocity: float  # 0..1


@dataclass(frozen=True)
class InstrumentClass:
    """A class of the bundled set: GM programs (0-based; drum kit numbers when
    ``drums``), the key range it plays in, and the phrase styles it plays."""

    name: str
    programs: tuple[int, ...]
    low: int
    high: int
    styles: tuple[str, ...]
    drums: bool = False


BAND: tuple[InstrumentClass, ...] = (
    InstrumentClass("piano", (0, 1, 2, 3), 33, 96, ("melody", "chords", "arpeggio")),
    InstrumentClass("organ", (16, 17, 18, 19), 36, 84, ("chords", "melody")),
    InstrumentClass("acoustic_guitar", (24, 25), 40, 79, ("strum", "arpeggio", "melody")),
    InstrumentClass("electric_guitar", (26, 27, 28, 29, 30), 40, 84,
                    ("melody", "strum", "arpeggio")),
    InstrumentClass("bass", (32, 33, 34, 35, 36, 38), 28, 55, ("bassline",)),
    InstrumentClass("drums", (0, 8, 16, 24, 25, 32, 40), 35, 81, ("groove",), drums=True),
    InstrumentClass("strings", (40, 41, 42, 44, 48, 49), 43, 91, ("chords", "melody")),
    InstrumentClass("brass", (56, 57, 58, 59, 60, 61), 40, 82, ("melody", "chords")),
    InstrumentClass("reeds", (64, 65, 66, 67, 68, 70, 71), 40, 86, ("melody", "arpeggio")),
    InstrumentClass("flute", (72, 73, 74, 75), 60, 96, ("melody", "arpeggio")),
    InstrumentClass("voice", (52, 53, 54), 48, 79, ("melody", "chords")),
)


@dataclass(frozen=True)
class Feel:
    """The shared musical context of one phrase."""

    beat: float  # seconds per beat
    tonic: int  # pitch class 0..11
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    beats_per_chord: int
    loudness: float  # base velocity 0..1
    legato: float  # sounding fraction of each note's slot
    swing: float  # delay of off-beat eighths, in beats

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Feel:
        return cls(
            beat=60.0 / rng.uniform(72, 160),
            tonic=int(rng.integers(12)),
            scale=SCALES[_pick(rng, tuple(sorted(SCALES)))],
            progression=PROGRESSIONS[rng.integers(len(PROGRESSIONS))],
            beats_per_chord=int(rng.choice((2, 4, 4))),
            loudness=rng.uniform(0.45, 0.95),
            legato=rng.uniform(0.35, 1.0),
            swing=rng.choice((0.0, 0.0, 0.08, 0.16)),
        )

    def keys_in(self, low: int, high: int) -> np.ndarray:
        """Every scale key in ``[low, high]``, ascending."""
        return np.array([k for k in range(low, high + 1) if (k - self.tonic) % 12 in self.scale])

    def chord(self, degree: int, size: int = 3) -> tuple[int, ...]:
        """Pitch classes of the diatonic chord on ``degree`` (stacked scale thirds)."""
        return tuple((self.tonic + self.scale[(degree + 2 * i) % 7]) % 12 for i in range(size))

    def chord_at(self, beats: float) -> int:
        return self.progression[int(beats // self.beats_per_chord) % len(self.progression)]

    def time(self, beats: float) -> float:
        """Seconds of a beat position, with swing on the off-beat eighths."""
        offbeat = abs((beats % 1.0) - 0.5) < 1e-6
        return (beats + (self.swing if offbeat else 0.0)) * self.beat


def _pick(rng: np.random.Generator, options: tuple) -> object:
    """One of ``options`` (which may be tuples of different lengths)."""
    return options[int(rng.integers(len(options)))]


def make_phrase(style: str, instrument: InstrumentClass, seconds: float,
                rng: np.random.Generator) -> list[Note]:
    """Notes of one phrase of about ``seconds`` in ``instrument``'s register.

    A short, slow phrase can come out as rests only (a 2 s melody at 72 bpm in half notes
    is two notes, each a rest now and then); then the phrase is drawn again from the
    same generator, so every phrase that had notes stays as it was.
    """
    if style not in STYLES:
        raise ValueError(f"unknown phrase style {style!r}; known: {sorted(STYLES)}")
    for _ in range(PHRASE_ATTEMPTS):
        feel = Feel.draw(rng)
        total_beats = seconds / feel.beat
        notes = STYLES[style](feel, instrument, total_beats, rng)
        jitter = rng.normal(0.0, 0.006, len(notes))
        human = []
        for note, shift in zip(notes, jitter):
            start = max(0.0, note.start + shift)
            if start < seconds - 0.05:
                velocity = float(np.clip(note.velocity + rng.normal(0, 0.05), 0.08, 1.0))
                human.append(Note(start, max(0.03, note.duration), note.key, velocity))
        if human:
            return human
    raise ValueError(f"no notes in {PHRASE_ATTEMPTS} {style} phrases of {seconds:.2f} s for {instrument.name}")


def _melody(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    keys = feel.keys_in(max(inst.low, inst.low + 5), min(inst.high, inst.low + 31))
    position = int(rng.integers(len(keys) // 4, 3 * len(keys) // 4 + 1))
    rhythm = _pick(rng, ((1.0, 1.0, 0.5, 0.5), (0.5,), (1.5, 0.5), (2.0, 1.0, 1.0),
                         (0.25, 0.25, 0.5), (1.0,)))
    notes, now, step = [], 0.0, 0
    while now < beats:
        length = float(rhythm[step % len(rhythm)])
        step += 1
        if rng.random() > 0.1:  # a rest now and then
            position = int(np.clip(position + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3)),
                                   0, len(keys) - 1))
            accent = 0.12 if abs(now % 2) < 1e-6 else 0.0
            notes.append(Note(feel.time(now), length * feel.beat * feel.legato,
                              int(keys[position]), feel.loudness + accent))
        now += length
    return notes


def _voicing(feel: Feel, degree: int, low: int, high: int, size: int) -> list[int]:
    """Chord keys near the middle of ``[low, high]``."""
    centre = (low + high) // 2 - 6
    pitch_classes = feel.chord(degree, size)
    keys = []
    for pitch_class in pitch_classes:
        key = centre + (pitch_class - centre) % 12
        keys.append(key if key <= high else key - 12)
    return sorted(keys)


def _chords(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    size = int(rng.choice((3, 3, 4)))
    pattern = _pick(rng, ((0.0,), (0.0, 2.0), (0.0, 1.0, 2.0, 3.0), (0.0, 1.5, 2.5),
                          (0.5, 1.5, 2.5, 3.5)))
    hit_length = feel.beats_per_chord if len(pattern) == 1 else 1.0
    notes, bar = [], 0.0
    while bar < beats:
        for offset in pattern:
            now = bar + offset
            if now >= beats or offset >= feel.beats_per_chord:
                continue
            for key in _voicing(feel, feel.chord_at(now), inst.low, inst.high, size):
                notes.append(Note(feel.time(now), hit_length * feel.beat * feel.legato, key,
                                  feel.loudness - 0.08))
        bar += feel.beats_per_chord
    return notes


def _arpeggio(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    step = float(rng.choice((0.25, 0.5, 0.5)))
    shape = rng.choice(("up", "down", "updown"))
    notes, now = [], 0.0
    while now < beats:
        base = _voicing(feel, feel.chord_at(now), inst.low, inst.high, 3)
        tones = [k for k in base + [k + 12 for k in base] if k <= inst.high]
        order = tones if shape == "up" else tones[::-1] if shape == "down" else \
            tones + tones[-2:0:-1]
        index = int(round(now / step)) % len(order)
        notes.append(Note(feel.time(now), step * feel.beat * max(feel.legato, 0.6) * 1.5,
                          order[index], feel.loudness - 0.1 * (index % 2)))
        now += step
    return notes


def _strum(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    pattern = _pick(rng, ((0.0, 1.0, 1.5, 2.5, 3.0, 3.5), (0.0, 2.0), (0.0, 1.0, 2.0, 3.0),
                          (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)))
    spread = rng.uniform(0.008, 0.025)  # seconds between strings
    notes, bar = [], 0.0
    while bar < beats:
        for number, offset in enumerate(pattern):
            now = bar + offset
            if now >= beats or offset >= feel.beats_per_chord:
                continue
            base = _voicing(feel, feel.chord_at(now), inst.low, inst.high, 3)
            strings = [base[0] - 12, *base, base[0] + 12, base[1] + 12]
            strings = [k for k in strings if inst.low <= k <= inst.high]
            down = number % 2 == 0 or len(pattern) == 2
            for string, key in enumerate(strings if down else strings[::-1]):
                notes.append(Note(feel.time(now) + string * spread,
                                  feel.beat * feel.legato * 1.2, key,
                                  feel.loudness - (0.0 if down else 0.15)))
        bar += feel.beats_per_chord
    return notes


def _bassline(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    figure = rng.choice(("roots", "root_fifth", "octaves", "walking", "syncopated"))
    step = 0.5 if figure in ("octaves", "syncopated") else 1.0
    notes, now = [], 0.0
    while now < beats:
        root_class = feel.chord(feel.chord_at(now), 1)[0]
        root = inst.low + (root_class - inst.low) % 12
        beat_in_chord = int(round(now / step)) % int(feel.beats_per_chord / step)
        key = root
        if figure == "root_fifth" and beat_in_chord % 2:
            key = root + 7
        elif figure == "octaves" and beat_in_chord % 2:
            key = root + 12
        elif figure == "walking" and beat_in_chord:
            scale_keys = feel.keys_in(inst.low, inst.high)
            key = int(scale_keys[min(np.searchsorted(scale_keys, root) + beat_in_chord,
                                     len(scale_keys) - 1)])
        if figure == "syncopated" and beat_in_chord in (1, 4) and rng.random() < 0.7:
            now += step
            continue
        notes.append(Note(feel.time(now), step * feel.beat * feel.legato, min(key, inst.high),
                          feel.loudness + (0.1 if beat_in_chord == 0 else 0.0)))
        now += step
    return notes


GROOVES = {  # 16 sixteenth-steps per bar: step -> drum keys
    "rock": {0: (KICK,), 4: (SNARE,), 8: (KICK,), 10: (KICK,), 12: (SNARE,)},
    "four_on_floor": {0: (KICK,), 4: (KICK, CLAP), 8: (KICK,), 12: (KICK, CLAP)},
    "half_time": {0: (KICK,), 6: (KICK,), 8: (SNARE,), 14: (KICK,)},
    "funk": {0: (KICK,), 3: (KICK,), 4: (SNARE,), 7: (SNARE,), 10: (KICK,), 12: (SNARE,),
             15: (SNARE,)},
    "jazz": {0: (KICK,), 8: (SIDE_STICK,), 12: (PEDAL_HAT,), 4: (PEDAL_HAT,)},
}


def _groove(feel: Feel, inst: InstrumentClass, beats: float, rng: np.random.Generator) -> list[Note]:
    name = rng.choice(sorted(GROOVES))
    cymbal_keys = {"jazz": (RIDE, RIDE_BELL), "four_on_floor": (CLOSED_HAT, OPEN_HAT)}
    cymbal, accent_cymbal = cymbal_keys.get(name, (rng.choice((CLOSED_HAT, RIDE)), OPEN_HAT))
    cymbal_every = int(rng.choice((1, 2, 2))) if name != "jazz" else 2
    extra = rng.choice((None, TAMBOURINE, COWBELL, None, None))
    notes = []
    bars = int(np.ceil(beats / 4))
    for bar in range(bars):
        fill = bar == bars - 1 and bars > 1 and rng.random() < 0.5
        for step in range(16):
            now = bar * 4 + step / 4
            if now >= beats:
                break
            hits = list(GROOVES[name].get(step, ()))
            if fill and step >= 8:
                hits = [TOMS[(step - 8) % len(TOMS)]] if step % 2 == 0 else []
            elif step % cymbal_every == 0:
                hits.append(accent_cymbal if name == "four_on_floor" and step % 4 == 2 else cymbal)
            if bar == 0 and step == 0 and rng.random() < 0.5:
                hits.append(CRASH)
            if extra is not None and step % 4 == 2:
                hits.append(int(extra))
            if SNARE not in hits and rng.random() < 0.06:
                hits.append(SNARE)  # ghost note
            for key in hits:
                loud = feel.loudness + (0.1 if key in (KICK, SNARE, CRASH) else -0.15)
                loud -= 0.35 if key == SNARE and step not in GROOVES[name] else 0.0
                notes.append(Note(feel.time(now), 0.2, int(key), loud))
    return notes


STYLES: dict[str, Callable[[Feel, InstrumentClass, float, np.random.Generator], list[Note]]] = {
    "melody": _melody,
    "chords": _chords,
    "arpeggio": _arpeggio,
    "strum": _strum,
    "bassline": _bassline,
    "groove": _groove,
}
