"""Prepare throughput: melnas-prepare against a plain single-process librosa loop.

Both read the same files and produce the same thing: 16 kHz mono, 1 s windows every
0.5 s, 64-band log-mel (512-sample frames, 256-sample hop). melnas also writes the
cache (features, index, stats, examples.png); its figure includes all of that and the
process-pool start-up. The librosa loop runs with one BLAS thread, like each melnas
worker: with OpenBLAS's default threads its small matrix products get several times
slower on a busy machine, which would flatter melnas.

    python benchmarks/bench_prepare.py                       # synthesises a folder first
    python benchmarks/bench_prepare.py --audio data/instruments --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.data.manifest import AUDIO_EXTENSIONS
from nas.data.parallel import available_cores, one_blas_thread
from nas.data.prepare import prepare_dataset
from nas.data.synth import SynthSettings, synthesize


def librosa_loop(files: list[Path]) -> tuple[int, int]:
    """The baseline: load + resample, cut windows, mel + dB, one file after another."""
    import librosa

    done = windows = 0
    for path in files:
        try:
            signal, _ = librosa.load(path, sr=16000, mono=True)
        except Exception:  # noqa: BLE001 - a baseline that skips what it cannot read
            continue
        if signal.size < 16000:
            signal = np.pad(signal, (0, 16000 - signal.size))
        for start in range(0, signal.size - 16000 + 1, 8000):
            mel = librosa.feature.melspectrogram(y=signal[start : start + 16000], sr=16000,
                                                 n_fft=512, hop_length=256, n_mels=64)
            librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
            windows += 1
        done += 1
    return done, windows


def librosa_loop_one_thread(files: list[Path]) -> tuple[int, int]:
    with one_blas_thread():
        return librosa_loop(files)


def melnas_prepare(root: Path, cache_dir: Path, workers: int) -> tuple[int, int]:
    report = prepare_dataset({"root": str(root), "cache_dir": str(cache_dir),
                              "num_workers": workers, "rebuild": True}, progress=False)
    files = sum(sum(split.values()) for split in report.recordings.values())
    windows = sum(sum(split.values()) for split in report.windows.values())
    return files, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, help="a folder with one sub-folder per class "
                        "(default: synthesise 11 classes x --files-per-class clips)")
    parser.add_argument("--files-per-class", type=int, default=24)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per row; the fastest counts (the machine may be shared)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as scratch:
        scratch = Path(scratch)
        root = args.audio
        if root is None:
            root = scratch / "audio"
            synthesize(SynthSettings(out_dir=root, files_per_class=args.files_per_class,
                                     num_workers=args.workers), progress=False)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        librosa_loop(files[:1])  # imports and first-call set-up are not the loop's cost

        rows = []
        for label, run in (
            ("librosa loop (1 process)", lambda: librosa_loop_one_thread(files)),
            ("melnas prepare, 1 worker", lambda: melnas_prepare(root, scratch / "c1", 1)),
            (f"melnas prepare, {args.workers} workers",
             lambda: melnas_prepare(root, scratch / "cn", args.workers)),
        ):
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                n_files, n_windows = run()
                best = min(best, time.perf_counter() - started)
            rows.append((label, n_files, n_windows, best))

    base_files = rows[0][1] / rows[0][3]
    print(f"{len(files)} files in {root}; {available_cores()} cores; "
          f"fastest of {args.repeats} runs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<30}{'files':>7}{'windows':>9}{'seconds':>9}{'files/s':>9}{'windows/s':>11}"
          f"{'vs librosa':>12}")
    for label, n_files, n_windows, seconds in rows:
        print(f"{label:<30}{n_files:>7}{n_windows:>9}{seconds:>9.2f}{n_files / seconds:>9.1f}"
              f"{n_windows / seconds:>11.1f}{(n_files / seconds) / base_files:>11.2f}x")


if __name__ == "__main__":
    main()
