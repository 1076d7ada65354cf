"""What the commands read: image arguments (files, folders, globs, `-`), output modes, shards."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from janus_cli.cli import tables
from janus_cli.errors import InputError

STDIN = "-"
GLOB_CHARS = "*?["


def output_mode(as_json: bool, as_jsonl: bool) -> str:
    """ "text", "json" (one document) or "jsonl" (one line per item as it finishes)."""
    if as_json and as_jsonl:
        raise InputError("--json and --jsonl: choose one")
    return "json" if as_json else "jsonl" if as_jsonl else "text"


def image_suffixes() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def expand_images(args: list[str]) -> list[str]:
    """Each argument as image names: a file; a table's `image` column (.parquet, .jsonl); a
    folder's images (sorted, not recursive); a glob the shell left unexpanded (sorted); or `-`
    for image bytes on stdin (at most once)."""
    names: list[str] = []
    for arg in args:
        if arg == STDIN:
            names.append(STDIN)
        elif tables.is_table(arg):
            names += tables.table_images(arg)
        elif os.path.isdir(arg):
            suffixes = image_suffixes()
            found = sorted(
                str(p) for p in Path(arg).iterdir() if p.is_file() and p.suffix.lower() in suffixes
            )
            if not found:
                raise InputError(f"{arg}: a folder with no images in it")
            names += found
        elif not os.path.exists(arg) and any(c in arg for c in GLOB_CHARS):
            found = sorted(p for p in glob.glob(arg) if os.path.isfile(p))
            if not found:
                raise InputError(f"{arg}: no files match")
            names += found
        else:
            names.append(arg)
    if names.count(STDIN) > 1:
        raise InputError("`-` (image bytes on stdin) can be given once")
    return names


def read_stdin_bytes(names: list[str]) -> bytes | None:
    """The image bytes on stdin when NAMES holds `-`."""
    if STDIN not in names:
        return None
    if sys.stdin.isatty():
        raise InputError("`-` reads image bytes from stdin, but stdin is a terminal")
    return sys.stdin.buffer.read()


def probe_image(name: str) -> None:
    """Fail now, cheaply (header only), on a missing file or one Pillow cannot identify."""
    from janus_cli.imageio import probe_image as probe

    probe(name)


def load(name: str, stdin: bytes | None):
    """The image NAME as RGB (the stdin bytes for `-`)."""
    from janus_cli.imageio import load_image

    return load_image(stdin if name == STDIN else name)


def parse_shard(spec: str | None, env: dict | None = None) -> tuple[int, int] | None:
    """(K, N) from `--shard K/N` (1 <= K <= N), else from SLURM_ARRAY_TASK_ID/COUNT when set
    (K = ID - SLURM_ARRAY_TASK_MIN + 1), else None (all items)."""
    env = os.environ if env is None else env
    if spec is None:
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return None
        try:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            spec = f"{int(env['SLURM_ARRAY_TASK_ID']) - first + 1}/{int(env['SLURM_ARRAY_TASK_COUNT'])}"
        except ValueError:
            raise InputError("SLURM_ARRAY_TASK_ID/COUNT/MIN: not integers") from None
    k, _, n = spec.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise InputError(f"--shard {spec}: expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise InputError(f"--shard {spec}: K must be between 1 and N")
    return k, n


def shard_range(total: int, shard: tuple[int, int] | None) -> range:
    """The contiguous block of item indices 0..TOTAL-1 that shard (K, N) owns; the N blocks
    cover every index exactly once, and differ in size by at most one."""
    if shard is None:
        return range(total)
    k, n = shard
    return range((k - 1) * total // n, k * total // n)
