"""A search's checkpoint and what a resumed search must share with the run it continues:
where the checkpoint lives, its format, the run's identity (its whole config, flattened,
minus the settings a resume may change) and the identity of the data it trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from nas.errors import MelnasError
from nas.io.checkpoint import CheckpointError

CHECKPOINT = Path("checkpoints") / "last.pt"  # in the run directory
CHECKPOINT_FORMAT = 1
# Settings that may differ between an interrupted run and its resumption.
# trainer.final.referees and the refit only join the final phase, after the last checkpoint:
# resuming a finished search with them re-picks its winners without training anything.
# trainer.keep_epoch_supernets only writes files (an epoch run without it has none).
RESUME_FREE_KEYS = {"resume", "trainer.progress", "trainer.stop_after_epochs", "trainer.num_workers",
                    "trainer.device", "trainer.amp", "trainer.threads", "data.num_workers", "data.rebuild",
                    "trainer.final.referees", "trainer.final.referee_searches", "trainer.final.referee_dir",
                    "trainer.final.refit_examples", "trainer.final.refit_l2", "trainer.keep_epoch_supernets"}
SHOWN_CHANGES = 12  # a refused resume names this many changed settings


def check_resumable(checkpoint: Mapping[str, Any], identity: dict, path: Path) -> None:
    """CheckpointError unless ``checkpoint`` was written by a run of the same config."""
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {checkpoint.get('format')}, expected {CHECKPOINT_FORMAT}")
    saved = checkpoint["identity"]
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
        run_dir = path.parent.parent
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {identity.get(k)!r}" for k in changed[:SHOWN_CHANGES])
        more = f"; and {len(changed) - SHOWN_CHANGES} more" if len(changed) > SHOWN_CHANGES else ""
        raise CheckpointError(
            f"resume=true needs the config the run in {run_dir} was started with; {len(changed)} setting(s) "
            f"changed: {details}{more}. `melnas-search resume=true hydra.run.dir={run_dir}` continues it with its "
            f"own settings; a resume may change only {', '.join(sorted(RESUME_FREE_KEYS))}"
        )


def check_same_data(checkpoint: Mapping[str, Any], split_identity: str, *, run_dir: Path, cache_dir: str | Path,
                    setting: str, remedy: str) -> None:
    """MelnasError unless the search that wrote ``checkpoint`` trained on the splits ``cache_dir``
    holds now (``PreparedData.split_identity``). The path alone does not say it: preparing
    again with another ``data.seed`` or with recordings added or removed rewrites the same
    cache with other splits, and a supernet that trained on today's val recordings scores
    them too well. Checkpoints written before melnas recorded the splits pass."""
    saved = checkpoint.get("split_identity")
    if saved is not None and saved != split_identity:
        raise MelnasError(f"{setting}: {run_dir} trained on other splits than {cache_dir} holds now: it was prepared "
                          "again since with other settings (data.seed, data.splits, ...) or recordings added or "
                          f"removed; {remedy}")


def identity_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """A plain config as flat ``dotted.key -> value`` pairs, minus what a resume may change."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif prefix not in RESUME_FREE_KEYS:
            flat[prefix] = node

    walk("", dict(config))
    return flat
