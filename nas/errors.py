"""The one base class of the errors a user can fix (a bad setting, a missing file, a
stale cache): every console command prints them as one line and exits with status 2.

This module is the bottom layer of ``nas/``: it imports nothing of the project.
"""

from __future__ import annotations


class MelnasError(ValueError):
    """A problem with the input or the configuration; the message names the setting and the fix.

    A ``ValueError`` so that code (and tests) that catch ``ValueError`` keep working;
    plain ``ValueError`` raised by validation is treated as a user error as well.
    """
