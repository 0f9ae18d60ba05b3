"""``examples.png``: one log-mel window per class, so a person can see what the
network will see."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np


def plot_examples(path: Path, class_names: Sequence[str], pictures: Sequence[np.ndarray],
                  captions: Sequence[str], *, frame_hop_seconds: float) -> None:
    """Save a grid of ``[n_mels, frames]`` log-mel pictures (dB, one colour scale), one
    per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    stack = np.stack([picture.astype(np.float32) for picture in pictures])
    low, high = np.percentile(stack, [1, 99.9])
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns + 1.0, 2.4 * rows),
                                squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.88, bottom=0.08, top=0.9, hspace=0.75,
                           wspace=0.3)
    image = None
    for axis in axes.flat[len(pictures):]:
        axis.axis("off")
    for axis, name, picture, caption in zip(axes.flat, class_names, stack, captions):
        image = axis.imshow(picture, origin="lower", aspect="auto", cmap="magma",
                            vmin=low, vmax=high,
                            extent=(0, picture.shape[1] * frame_hop_seconds, 0, picture.shape[0]))
        axis.set_title(f"{name}\n{caption}", fontsize=7)
        axis.tick_params(labelsize=6)
    for axis in axes[-1]:
        axis.set_xlabel("seconds", fontsize=7)
    for axis in axes[:, 0]:
        axis.set_ylabel("mel band", fontsize=7)
    figure.colorbar(image, cax=figure.add_axes((0.91, 0.15, 0.015, 0.7)), label="dB")
    figure.savefig(path, dpi=90)
    plt.close(figure)
