"""Tables in and out: a Parquet or JSON-lines file listing the work, with an `image` column
(describe) or a `prompt` column plus optional per-row overrides (the image commands), as large
jobs keep it; and a manifest's records as one Parquet file (--format parquet)."""

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
            raise InputError(f'{path}: row {number} has no "image" path')
    return names


def table_prompts(path: str) -> list[dict]:
    """The rows of a Parquet prompts table, each named for errors like a prompts-file line."""
    return [{**row, "_line": f"{path}: row {number}"} for number, row in enumerate(read_rows(path), 1)]


def parquet_copy(manifest: str | None, wanted: bool) -> Path | None:
    """Where --format parquet puts the records of MANIFEST (beside it, suffix .parquet), or
    None without it. Refuses before any work when it cannot be done."""
    if not wanted:
        return None
    if manifest is None:
        raise InputError(
            "--format parquet needs --manifest FILE (its records become FILE's name with .parquet)"
        )
    path = Path(manifest)
    if path.suffix.lower() == ".parquet":
        raise InputError(
            f"--manifest {manifest}: the manifest is JSON lines; --format parquet writes "
            f"{path.with_suffix('')}.parquet beside it"
        )
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("--format parquet needs pyarrow: pip install 'janus-cli[ray]'") from None
    return path.with_suffix(".parquet")


def write_parquet(records: list[dict], path: Path) -> None:
    """RECORDS as one Parquet table at PATH, written to a temporary name and renamed; columns
    are every key any record has (answers and errors have different ones), absent = null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(key for record in records for key in record))
    table = pa.table({key: [record.get(key) for record in records] for key in columns})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
