"""Work listed in a table: a Parquet or JSON-lines file with an `image` column (describe) or a
`prompt` column plus optional per-row overrides (the image commands), as large jobs keep it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from janus_cli.errors import InputError

SUFFIXES = (".parquet", ".jsonl")


def is_table(arg: str) -> bool:
    return arg.lower().endswith(SUFFIXES) and os.path.isfile(arg)


def read_rows(path: str) -> list[dict]:
    """Every row of PATH as a dict (a Parquet null is left out, so it overrides nothing)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if path.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"{path}: reading Parquet needs pyarrow: pip install 'janus-cli[ray]'") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise InputError(f"{path}: not a Parquet file pyarrow can read ({e})") from None
        return [{k: v for k, v in row.items() if v is not None} for row in rows]
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(doc, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        rows.append(doc)
    return rows


def table_images(path: str) -> list[str]:
    """The `image` column of PATH: image paths as written (relative to the current folder)."""
    names = [row.get("image") for row in read_rows(path)]
    if not names:
        raise InputError(f"{path}: no rows")
    for number, name in enumerate(names, 1):
        if not isinstance(name, str) or not name:
            raise InputError(f"{path}: row {number} has no \"image\" path")
    return names


def table_prompts(path: str) -> list[dict]:
    """The rows of a Parquet prompts table, each named for errors like a prompts-file line."""
    return [{**row, "_line": f"{path}: row {number}"} for number, row in enumerate(read_rows(path), 1)]
