"""Hub access: the one place that may download, and only when it is asked to."""

from __future__ import annotations

import logging
from pathlib import Path

from artquant_sdk._errors import ModelUnavailableError

__all__ = ["fetch_snapshot"]

logger = logging.getLogger(__name__)


def _instructions(repo_id: str, revision: str | None, label: str, local_dir: Path | None) -> str:
    rev = f" --revision {revision}" if revision and revision != "main" else ""
    if local_dir is not None:
        where = f"put its files in {local_dir}/ (that folder is what {label!r} resolves to)"
        fetch = (
            f"`artquant download {label}` or `hf download {repo_id}{rev} --local-dir {local_dir}`"
        )
    else:
        where = "put its files in a folder and pass that folder's path instead of the name"
        fetch = f"`hf download {repo_id}{rev} --local-dir <folder>`"
    return (
        f"Download https://huggingface.co/{repo_id} on a machine with network access ({fetch}) "
        f"and {where}."
    )


def fetch_snapshot(
    repo_id: str,
    *,
    revision: str | None,
    local_dir: Path | None,
    local_files_only: bool,
    allow_patterns: list[str] | None,
    label: str,
    hint: str = "",
) -> Path:
    """Return a complete local copy of a hub repository, downloading only when allowed.

    The Hugging Face cache is consulted first without network. Then, unless
    ``local_files_only``, the files are downloaded into ``local_dir`` (or the cache when None).

    Args:
        repo_id: ``owner/name``.
        revision: Branch, tag or commit (None: ``main``).
        local_dir: Where a download goes (a ModelZoo folder), or None for the hub cache.
        local_files_only: Never use the network.
        allow_patterns: File patterns to fetch (None: every file).
        label: The name the user gave, for messages.
        hint: A sentence appended to the instructions (e.g. that a base is needed too).

    Returns:
        The folder holding the files.

    Raises:
        ModelUnavailableError: Not on disk and not downloadable now; the message says what to
            download and where to put it.
    """
    import huggingface_hub
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        cached = huggingface_hub.snapshot_download(
            repo_id, revision=revision, local_files_only=True, allow_patterns=allow_patterns
        )
        logger.info("using %s from the hub cache: %s", repo_id, cached)
        return Path(cached)
    except (LocalEntryNotFoundError, OSError) as error:
        cache_error: Exception = error
    how = _instructions(repo_id, revision, label, local_dir) + (f" {hint}" if hint else "")
    if local_files_only:
        raise ModelUnavailableError(
            f"{label!r} is not on this machine and downloads are off (local_files_only, "
            f"--offline or HF_HUB_OFFLINE=1). {how}"
        ) from cache_error
    logger.info(
        "downloading %s (revision %s) to %s",
        repo_id,
        revision or "main",
        local_dir or "the hub cache",
    )
    try:
        path = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            local_dir=local_dir,
            allow_patterns=allow_patterns,
        )
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as error:
        raise ModelUnavailableError(
            f"the hub refused {repo_id!r} (revision {revision or 'main'}): {error}. "
            "Check the name, the revision and your access token (`hf auth login`)."
        ) from error
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise ModelUnavailableError(
            f"{label!r} is not on this machine and downloading it failed "
            f"({type(error).__name__}: {error}). {how}"
        ) from error
    return Path(path)
