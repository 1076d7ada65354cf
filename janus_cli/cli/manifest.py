"""A JSONL manifest of finished items, appended a line at a time, so a killed run can resume."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Manifest:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._checked_tail = False

    def records(self) -> list[dict]:
        """Every complete record; a last line cut short by a kill is ignored."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def append(self, record: dict) -> None:
        """Add RECORD as one line, flushed to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            if not self._checked_tail:  # start on a fresh line after a line cut short
                self._checked_tail = True
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
            f.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
