"""Resolve `-m` to a local checkpoint folder: a directory, a short alias or a hub repo id.

The registry of known models is data (`models.json`), not code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from janus_cli.errors import DownloadError, InputError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo: str
    family: str
    description: str
    download_gb: float
    parameters: int
    files: tuple[str, ...]


def registry() -> dict[str, ModelSpec]:
    data = json.loads(resources.files("janus_cli.checkpoints").joinpath("models.json").read_text())
    return {k: ModelSpec(name=k, **{**v, "files": tuple(v["files"])}) for k, v in data.items()}


def spec_for(ref: str) -> ModelSpec | None:
    """The registry entry for an alias or repo id (case-insensitive), if any."""
    ref_l = ref.lower()
    for spec in registry().values():
        if ref_l in (spec.name, spec.repo.lower()):
            return spec
    return None


def resolve(ref: str, revision: str | None = None, progress: bool = True) -> Path:
    """A local folder for REF: the folder itself, else the hub cache, else a download.

    Raises:
        InputError: REF looks like a path that does not exist.
        DownloadError: not cached and it cannot be downloaded.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    spec = spec_for(ref)
    repo = spec.repo if spec else ref
    if spec is None and (ref.count("/") != 1 or path.exists() or ref.startswith((".", "~", "/"))):
        known = ", ".join(registry())
        raise InputError(f"{ref}: no such directory, known model ({known}) or hub repo id")
    return download(repo, spec.files if spec else None, revision, progress)


def download(repo: str, files: tuple[str, ...] | None, revision: str | None, progress: bool) -> Path:
    """The snapshot of REPO in the Hugging Face cache, downloading what is missing."""
    import huggingface_hub as hf
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = list(files) if files else None
    try:
        return Path(
            hf.snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True)
        )
    except LocalEntryNotFoundError:
        pass
    how = (
        f"download it where there is network with `hf download {repo}` (then copy the Hugging Face "
        f"cache, or pass the folder with -m DIR)"
    )
    if hf_constants.HF_HUB_OFFLINE:
        raise DownloadError(f"{repo} is not in the local cache and HF_HUB_OFFLINE is set; {how}")
    try:
        if not progress:
            hf.utils.disable_progress_bars()
        return Path(hf.snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise DownloadError(f"{repo}: {str(e).splitlines()[0]}") from None
    except LocalEntryNotFoundError:
        raise DownloadError(f"cannot download {repo}: no network connection to the hub; {how}") from None
    except OSError as e:
        raise DownloadError(f"cannot download {repo} ({type(e).__name__}); {how}") from None


def cached_path(repo: str) -> Path | None:
    """The cached snapshot folder of REPO, or None (no network is used)."""
    import huggingface_hub as hf
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf.snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        return None
