"""Where generated images go: a folder (numbered names) or a name template.

Names are planned before any work (a template that repeats a name, or an existing file, is
refused up front) and claimed when each file is written: two runs writing into one folder at
once each end up with their own names (the later one moves on to the next free run number).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from janus_cli.errors import InputError

DEFAULT_NAME = "{slug}{run}-{i:03d}.png"  # {run} is "" or "-2", "-3", ... for a fresh set of names


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "image"


class Names:
    """The output path of each planned image (run index -> path).

    Args:
        output: a folder, or a template with {i}, {seed}, {slug}, {model}, {date}.
        records: one dict per image with index, seed, prompt and model.
        own: paths written by the run being resumed; they do not count as taken.
    """

    def __init__(self, output: str, records: list[dict], overwrite: bool, own: set[Path] = frozenset()):
        self.output, self.records, self.overwrite, self.own = output, records, overwrite, set(own)
        self.template = "{" in output or output.lower().endswith(".png")
        self.run = 1
        self.written: set[int] = set()
        self.paths = self._plan()
        if len(set(self.paths.values())) != len(self.paths):
            raise InputError(f"-o {output}: the template gives several images the same name; add {{i}}")
        if not overwrite:
            for p in self.paths.values():
                if self._taken(p):
                    raise InputError(f"{p}: exists (use --overwrite to replace it, or another -o)")

    def __getitem__(self, index: int) -> Path:
        return self.paths[index]

    def wrote(self, index: int) -> None:
        self.written.add(index)

    def next_run(self) -> bool:
        """After another process took one of our names in a folder: move the images not yet
        written to the next free run number. False for a template (its names are the user's)."""
        if self.template or self.overwrite:
            return False
        self.run += 1
        self.paths = {**self.paths, **self._plan(keep=self.written)}
        return True

    def _taken(self, p: Path) -> bool:
        return p not in self.own and p.exists()

    def _plan(self, keep: set[int] = frozenset()) -> dict[int, Path]:
        todo = [r for r in self.records if r["index"] not in keep]
        if self.template:
            return _fill(self.output, todo, run="")
        template = str(Path(self.output) / DEFAULT_NAME)
        while True:  # a folder: number the run so that nothing is overwritten and names sort by index
            paths = _fill(template, todo, run="" if self.run == 1 else f"-{self.run}")
            if self.overwrite or not any(self._taken(p) for p in paths.values()):
                return paths
            self.run += 1


def _fill(template: str, records: list[dict], run: str) -> dict[int, Path]:
    date = datetime.date.today().isoformat()
    try:
        return {
            r["index"]: Path(
                template.format(
                    i=r["index"],
                    seed=r["seed"],
                    slug=slug(r["prompt"]),
                    model=slug(r["model"]),
                    date=date,
                    run=run,
                )
            )
            for r in records
        }
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(
            f"-o {template}: bad name template ({e}); fields are {{i}} {{seed}} {{slug}} {{model}} {{date}}"
        ) from None


def write_sidecar(png: Path, record: dict, overwrite: bool) -> Path:
    """RECORD as `NAME.json` beside the image NAME.png, written atomically."""
    import json

    from janus_cli.files import write_new

    data = json.dumps(record, ensure_ascii=False, indent=2).encode()
    return write_new(png.with_suffix(".json"), lambda f: f.write(data), overwrite)
