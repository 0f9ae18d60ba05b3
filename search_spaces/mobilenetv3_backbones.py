"""torchvision's MobileNetV3 bneck tables at width 1.0: the data the ``mobilenetv3``
space is declared from (one row per layer; channels, stride and the reference choices)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerRow:
    """One layer of a reference backbone at width 1.0 (torchvision's bneck table)."""

    out_channels: int
    stride: int
    kernel: int
    expand: float
    se: bool
    activation: str


@dataclass(frozen=True)
class Backbone:
    stem_channels: int
    head_channels: int  # hidden width of the classifier at width 1.0
    layers: tuple[LayerRow, ...]


_R = LayerRow
BACKBONES: dict[str, Backbone] = {
    "large": Backbone(
        stem_channels=16,
        head_channels=1280,
        layers=(
            _R(out_channels=16, stride=1, kernel=3, expand=1, se=False, activation="relu"),
            _R(out_channels=24, stride=2, kernel=3, expand=4, se=False, activation="relu"),
            _R(out_channels=24, stride=1, kernel=3, expand=3, se=False, activation="relu"),
            _R(out_channels=40, stride=2, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=40, stride=1, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=40, stride=1, kernel=5, expand=3, se=True, activation="relu"),
            _R(out_channels=80, stride=2, kernel=3, expand=6, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.5, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.3, se=False, activation="hswish"),
            _R(out_channels=80, stride=1, kernel=3, expand=2.3, se=False, activation="hswish"),
            _R(out_channels=112, stride=1, kernel=3, expand=6, se=True, activation="hswish"),
            _R(out_channels=112, stride=1, kernel=3, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=2, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=160, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
        ),
    ),
    "small": Backbone(
        stem_channels=16,
        head_channels=1024,
        layers=(
            _R(out_channels=16, stride=2, kernel=3, expand=1, se=True, activation="relu"),
            _R(out_channels=24, stride=2, kernel=3, expand=4.5, se=False, activation="relu"),
            _R(out_channels=24, stride=1, kernel=3, expand=3.67, se=False, activation="relu"),
            _R(out_channels=40, stride=2, kernel=5, expand=4, se=True, activation="hswish"),
            _R(out_channels=40, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=40, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=48, stride=1, kernel=5, expand=3, se=True, activation="hswish"),
            _R(out_channels=48, stride=1, kernel=5, expand=3, se=True, activation="hswish"),
            _R(out_channels=96, stride=2, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=96, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
            _R(out_channels=96, stride=1, kernel=5, expand=6, se=True, activation="hswish"),
        ),
    ),
}
PRESET_BACKBONES = {"mobilenetv3_large": "large", "mobilenetv3_small": "small"}
