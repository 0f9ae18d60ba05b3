"""The base of every weight-shared network: ``forward(x, arch)`` runs only the chosen path.

Supernets live here, in ``child_models``, beside the blocks they share weights between,
because they are modules with no search knowledge: an ``arch`` is an opaque token to
them. The space that builds a supernet hands it a ``decode`` function that turns the
token into plain data (an ``EnasPlan``, a tuple of ``BlockSpec``), and the module only
ever reads that data. ``search_spaces`` owns decisions and ``Arch``; nothing here
imports it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Supernet(nn.Module):
    """Base for weight-shared networks: ``forward(x, arch)`` runs only the chosen path.

    ``subnet_state_dict(arch)`` returns the weights of that path under the parameter
    names of the space's standalone build of ``arch``, so that
    ``build(arch).load_state_dict(supernet.subnet_state_dict(arch))`` reproduces the
    supernet's outputs exactly in eval mode.
    """

    def forward(self, x: Tensor, arch: Any) -> Tensor:  # type: ignore[override]  # noqa: D401
        raise NotImplementedError

    def subnet_state_dict(self, arch: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def zero_init_residual_(self) -> int:
        """Start every residual block as the identity (its last batchnorm's scale at 0, as
        BigNAS and Goyal et al. 2017 do); returns how many batchnorms it zeroed, 0 for a
        supernet without residual blocks."""
        return 0
