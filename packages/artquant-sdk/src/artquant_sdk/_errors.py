"""Exceptions raised by artquant_sdk; each message names the bad value and what would work."""

from __future__ import annotations

__all__ = ["ManifestError", "ModelNotFoundError", "ModelUnavailableError"]


class ManifestError(ValueError):
    """The ModelZoo manifest is missing, unreadable or inconsistent."""


class ModelNotFoundError(ValueError):
    """A model name is neither a local folder, a ModelZoo name nor a hub repository id."""


class ModelUnavailableError(OSError):
    """A model must be downloaded but cannot be (offline, ``local_files_only``, hub error).

    The message says what to download and where to put it.
    """
