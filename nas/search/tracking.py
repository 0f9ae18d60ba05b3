"""What a search run reports while it runs: TensorBoard, ``search_log.jsonl``, the console.

``RunTracker`` owns the three sinks of one run directory:

- TensorBoard events under ``<run>/tensorboard/`` (scalars, choice probabilities,
  the best arch so far as text);
- ``<run>/search_log.jsonl``: one JSON object per scored arch, flushed per line;
- the console, through the ``melnas.search`` logger (Hydra also copies it to the
  run's log file) and progress bars (``nas.progress``).

A resumed run must not repeat what an interrupted run wrote after its last
checkpoint: ``resume_from(log_bytes, step)`` truncates the JSONL file to the size
recorded in the checkpoint and tells TensorBoard to purge events at later steps.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from torch.utils.tensorboard import SummaryWriter

from nas.progress import ProgressBar, progress_bar

LOGGER = logging.getLogger("melnas.search")
SEARCH_LOG = "search_log.jsonl"
TENSORBOARD_DIR = "tensorboard"


class RunTracker:
    """TensorBoard + JSONL + console for one run directory."""

    def __init__(self, run_dir: str | Path, *, progress: bool = True, purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.log_path = self.run_dir / SEARCH_LOG
        self.writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    # ---- search_log.jsonl ------------------------------------------------------------
    def log_bytes(self) -> int:
        """Current size of ``search_log.jsonl`` (saved in checkpoints)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def truncate_log(self, size: int) -> None:
        """Drop what was appended after a checkpoint that recorded ``size`` bytes."""
        if not self.log_path.exists():
            if size:
                raise ValueError(f"{self.log_path} is missing but the checkpoint expects {size} bytes of it")
            return
        current = self.log_bytes()
        if current < size:
            raise ValueError(
                f"{self.log_path} has {current} bytes but the checkpoint expects at least {size}: "
                "the log was edited or replaced; resume from a fresh run directory instead"
            )
        with self.log_path.open("r+b") as fh:
            fh.truncate(size)

    def log_scored(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append one JSON line per scored arch."""
        with self.log_path.open("a") as fh:
            for record in records:
                fh.write(json.dumps(record, allow_nan=False) + "\n")

    # ---- TensorBoard -----------------------------------------------------------------
    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def probabilities(self, probs: Mapping[str, list[float]], step: int, *, labels: Mapping[str, list[str]]) -> None:
        """One scalar per (decision, option): ``choice_prob/<decision>/<option>``."""
        for name, values in probs.items():
            for label, p in zip(labels.get(name, [str(i) for i in range(len(values))]), values):
                self.writer.add_scalar(f"choice_prob/{name}/{label}", float(p), step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    # ---- console ---------------------------------------------------------------------
    def bar(self, total: int, desc: str) -> ProgressBar:
        """A transient bar on stderr, or a line every 10% when stderr is not a terminal
        (none when ``progress`` is false)."""
        return progress_bar(total=total, desc=desc, leave=False, enabled=self.progress)

    def info(self, message: str) -> None:
        LOGGER.info(message)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class SilentTracker(RunTracker):
    """The tracker of every rank but 0 in a distributed run: the same calls, nothing written."""

    def __init__(self, run_dir: str | Path, **_: Any) -> None:
        self.run_dir = Path(run_dir)
        self.progress = False
        self.log_path = self.run_dir / SEARCH_LOG

    def log_bytes(self) -> int:
        return 0

    def truncate_log(self, size: int) -> None:
        pass

    def log_scored(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def probabilities(self, probs: Mapping[str, list[float]], step: int, *, labels: Mapping[str, list[str]]) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
