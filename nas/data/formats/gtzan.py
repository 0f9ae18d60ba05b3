"""GTZAN (Tzanetakis and Cook 2002): ``genres/<genre>/<genre>.000NN.au`` as
``genres.tar.gz`` unpacks, or ``Data/genres_original/<genre>/<genre>.000NN.wav`` in the
Kaggle copy (1,000 30-s clips, 10 genres). Either folder, or the folder above it, is
``data.root``.

GTZAN has no official split or folds, and no artist metadata: the split is drawn per
recording by ``data.seed`` with ``data.splits``, as for a folder of your own. Its known
faults (repeated clips, one unreadable file in the Kaggle copy, listed as
``undecodable``) make it optimistic; compare with published figures only loosely.
"""

from __future__ import annotations

from pathlib import Path

from nas.data.formats.common import find_base
from nas.data.manifest import Listing, scan_folder


def read_gtzan(root: Path) -> Listing:
    base = find_base(root, "blues", data_set="GTZAN",
                     unpacked="genres/ or Kaggle's Data/genres_original/",
                     candidates=("genres", "genres_original", "Data/genres_original", "."))
    return scan_folder(base)
