"""The one exception type for bad data on disk."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file is missing, corrupt or inconsistent.

    The message always names the offending file (or argument) and what was expected versus found, so a
    bad scene fails with one readable line instead of a stack trace halfway through an epoch. It is a
    ``ValueError`` so the CLI's generic bad-input handler reports it without a traceback.
    """
