"""Latency-aware rewards: ``reward(accuracy, latency_ms) -> float``.

- ``MnasReward``: ``ACC * (LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else
  ``beta`` (MnasNet, arXiv 1807.11626). Soft constraint ``alpha = beta = -0.07``
  (``conf/reward/mnas.yaml``); hard constraint ``alpha = 0, beta = -1``
  (``conf/reward/mnas_hard.yaml``).
- ``TunasReward``: TuNAS's absolute reward ``ACC + beta * |LAT / T - 1|``, ``beta = -0.1``
  (google-research/tunas): a symmetric penalty that pulls latency *to* the target.
- ``AccuracyReward``: ``ACC``; latency is ignored unless ``hard_limit`` is on.

``accuracy`` is a fraction in [0, 1]; ``latency_ms`` a positive number of milliseconds.

Hard limit: with ``hard_limit=True`` every arch with ``LAT > T`` gets ``reward.worst``,
a fixed floor strictly below anything an arch within the target can score: the lowest
in-target reward minus 1. In-target rewards are bounded below (``ACC >= 0`` and, for
mnas, ``(LAT/T) ** alpha >= 1``; for tunas ``|LAT/T - 1| <= 1``), so:
mnas and accuracy ``worst = -1``; tunas ``worst = beta - 1`` (``-1.1`` by default).
Without the hard limit, archs over the target are only penalised through ``beta``.

The default ``target_ms`` in the configs (0.1 ms) is a budget for a small audio CNN
(a 1 s, 64-band log-mel clip) at batch 1 on one CPU thread in ONNX Runtime; set it for
your device, e.g. ``melnas-search reward.target_ms=0.5``, or name a preset of the
searched space, ``reward.target_ms=mobilenetv3_small``: the target is then that
network's latency as the run's latency table predicts it ("as fast as MobileNetV3-Small
on this device and runtime"), resolved by ``RewardBuilder`` once the table exists.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from search_spaces.base import Arch, SearchSpace


class Reward(ABC):
    """Base: validates inputs, applies the optional hard limit, delegates the formula."""

    name: str = ""

    def __init__(self, *, target_ms: float | None, hard_limit: bool = False) -> None:
        if not isinstance(hard_limit, bool):
            raise TypeError(f"reward {self.name}: hard_limit must be true or false, got {hard_limit!r}")
        if target_ms is not None:
            target_ms = _finite(f"reward {self.name}: target_ms", target_ms)
            if target_ms <= 0:
                raise ValueError(f"reward {self.name}: target_ms must be > 0 milliseconds, got {target_ms}")
        self.target_ms = target_ms
        self.hard_limit = hard_limit

    def __call__(self, accuracy: float, latency_ms: float) -> float:
        accuracy = _finite("accuracy", accuracy)
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy} (a percentage?)")
        latency_ms = _finite("latency_ms", latency_ms)
        if latency_ms <= 0:
            raise ValueError(f"latency_ms must be > 0, got {latency_ms}")
        if self.hard_limit and latency_ms > self.target_ms:  # type: ignore[operator]
            return self.worst
        return self._score(accuracy, latency_ms)

    @property
    def worst(self) -> float:
        """The hard-limit floor: strictly below every in-target reward."""
        return self._lowest_in_target() - 1.0

    @abstractmethod
    def _score(self, accuracy: float, latency_ms: float) -> float: ...

    @abstractmethod
    def _lowest_in_target(self) -> float:
        """The infimum of the reward over ``accuracy`` in [0, 1] and ``latency_ms <= target_ms``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class MnasReward(Reward):
    """``ACC * (LAT / T) ** w``, ``w = alpha`` if ``LAT <= T`` else ``beta`` (both <= 0)."""

    name = "mnas"

    def __init__(
        self,
        target_ms: float,
        *,
        alpha: float = -0.07,
        beta: float = -0.07,
        hard_limit: bool = False,
    ) -> None:
        super().__init__(target_ms=_required(self.name, target_ms), hard_limit=hard_limit)
        self.alpha = _non_positive(f"reward {self.name}: alpha", alpha)
        self.beta = _non_positive(f"reward {self.name}: beta", beta)

    def _score(self, accuracy: float, latency_ms: float) -> float:
        ratio = latency_ms / self.target_ms  # type: ignore[operator]
        return accuracy * ratio ** (self.alpha if ratio <= 1.0 else self.beta)

    def _lowest_in_target(self) -> float:
        return 0.0  # ACC = 0; the latency factor is >= 1 within the target


class TunasReward(Reward):
    """TuNAS absolute reward ``ACC + beta * |LAT / T - 1|`` (``beta`` <= 0)."""

    name = "tunas"

    def __init__(self, target_ms: float, *, beta: float = -0.1, hard_limit: bool = False) -> None:
        super().__init__(target_ms=_required(self.name, target_ms), hard_limit=hard_limit)
        self.beta = _non_positive(f"reward {self.name}: beta", beta)

    def _score(self, accuracy: float, latency_ms: float) -> float:
        return accuracy + self.beta * abs(latency_ms / self.target_ms - 1.0)  # type: ignore[operator]

    def _lowest_in_target(self) -> float:
        return self.beta  # ACC = 0 and LAT -> 0, where |LAT/T - 1| -> 1


class AccuracyReward(Reward):
    """``ACC``. ``target_ms`` is needed only with ``hard_limit``."""

    name = "accuracy"

    def __init__(self, target_ms: float | None = None, *, hard_limit: bool = False) -> None:
        if hard_limit and target_ms is None:
            raise ValueError("reward accuracy: hard_limit=true needs target_ms (the latency limit)")
        super().__init__(target_ms=target_ms, hard_limit=hard_limit)

    def _score(self, accuracy: float, latency_ms: float) -> float:
        return accuracy

    def _lowest_in_target(self) -> float:
        return 0.0


@dataclass(frozen=True)
class RewardBuilder:
    """A reward whose ``target_ms`` is milliseconds or the name of a preset of the searched
    space, built once the run's latency table can predict that preset.

    ``make(target_ms=...)`` builds the reward (its config with the target filled in).
    """

    make: Callable[..., Reward]
    target_ms: float | str | None

    def __call__(self, space: SearchSpace, predict_ms: Callable[[Arch], float]) -> Reward:
        return self.make(target_ms=self.resolved_target_ms(space, predict_ms))

    def check(self, space: SearchSpace) -> None:
        """Refuse a target that names no preset of ``space`` (before a latency table is built)."""
        if isinstance(self.target_ms, str) and self.target_ms not in space.presets:
            raise ValueError(f"reward.target_ms={self.target_ms!r} is neither milliseconds nor a preset of the "
                             f"searched space {space.name!r} (its presets: {sorted(space.presets) or 'none'}); give "
                             "milliseconds, e.g. reward.target_ms=0.1, or one of those names")

    def resolved_target_ms(self, space: SearchSpace, predict_ms: Callable[[Arch], float]) -> float | None:
        self.check(space)
        if not isinstance(self.target_ms, str):
            return self.target_ms
        return float(predict_ms(space.presets[self.target_ms]))


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _non_positive(name: str, value: Any) -> float:
    out = _finite(name, value)
    if out > 0:
        raise ValueError(f"{name} must be <= 0 (a latency penalty), got {out}")
    return out


def _required(name: str, target_ms: Any) -> Any:
    if target_ms is None:
        raise ValueError(f"reward {name} needs target_ms (the latency target in milliseconds)")
    return target_ms
