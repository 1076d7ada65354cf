"""Where generated images go: directory or name template, PNG metadata, JSON records."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from janus_cli.errors import InputError

DEFAULT_NAME = "{slug}{run}-{i:03d}.png"  # {run} is "" or "-2", "-3", ... for a fresh set of names


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "image"


def plan_paths(output: str, records: list[dict], overwrite: bool, own: set[Path] = frozenset()) -> list[Path]:
    """One path per planned image from OUTPUT (a folder, or a template with {i}, {seed},
    {slug}, {model}, {date}); refuses before any work if a path exists or repeats. Paths in
    OWN (written by the run being resumed) do not count as existing, so a resumed run keeps
    its names."""

    def taken(p: Path) -> bool:
        return p not in own and p.exists()

    if "{" in output or output.lower().endswith(".png"):
        paths = _fill(output, records, run="")
    else:  # a folder: number the run so that nothing is overwritten and names sort by index
        template = str(Path(output) / DEFAULT_NAME)
        run = 1
        paths = _fill(template, records, run="")
        while not overwrite and any(taken(p) for p in paths):
            run += 1
            paths = _fill(template, records, run=f"-{run}")
    if len(set(paths)) != len(paths):
        raise InputError(f"-o {output}: the template gives several images the same name; add {{i}}")
    if not overwrite:
        for p in paths:
            if taken(p):
                raise InputError(f"{p}: exists (use --overwrite to replace it, or another -o)")
    return paths


def _fill(template: str, records: list[dict], run: str) -> list[Path]:
    date = datetime.date.today().isoformat()
    try:
        return [
            Path(template.format(i=r["index"], seed=r["seed"], slug=slug(r["prompt"]), model=slug(r["model"]), date=date, run=run))
            for r in records
        ]
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(f"-o {template}: bad name template ({e}); fields are {{i}} {{seed}} {{slug}} {{model}} {{date}}") from None


def png_metadata(record: dict) -> dict[str, str]:
    """imageio.png_metadata (the library's, which the server shares), imported when used."""
    from janus_cli.imageio import png_metadata

    return png_metadata(record)


def write_sidecar(png: Path, record: dict, overwrite: bool) -> Path:
    """RECORD as `NAME.json` beside the image NAME.png, written atomically."""
    import json
    import os
    import tempfile

    path = png.with_suffix(".json")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists (use --overwrite to replace it)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
