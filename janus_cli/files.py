"""Writing output files as users expect: atomically (a temporary name beside the target, then a
rename), with the permissions the umask gives (0644 under umask 022, not mkstemp's 0600), and
never over an existing file unless asked: the name is claimed at the moment of the rename, so
two runs writing into one folder cannot take each other's files."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from janus_cli.errors import InputError, OutputError


class PathTaken(InputError):
    """The target exists (or another process claimed it first)."""


def write_new(path: Path, write: Callable[[BinaryIO], None], overwrite: bool = False) -> Path:
    """Write PATH with WRITE(file), atomically; without OVERWRITE an existing PATH is never
    replaced (PathTaken). A failed write (a full disk) leaves no partial file (OutputError)."""
    path = Path(path)
    if not overwrite and path.exists():
        raise PathTaken(f"{path}: exists (use --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        _claim(tmp, path, overwrite)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _claim(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails when PATH exists: the claim
    except FileExistsError:
        raise PathTaken(f"{path}: exists (use --overwrite to replace it)") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # a file system without hard links: check, then rename
            raise PathTaken(f"{path}: exists (use --overwrite to replace it)") from None
        os.replace(tmp, path)


def check_writable(path: Path) -> None:
    """Fail now, before any work, when PATH's folder cannot be made or written: a file where a
    folder is needed, or a read-only parent."""
    folder = Path(path).parent if not Path(path).is_dir() else Path(path)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: {probe} is not writable")
