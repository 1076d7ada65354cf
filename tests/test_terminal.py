"""`janus generate` in a real terminal: result lines above the progress bar, never glued to a
stale one; previews under each path; a piped stdout stays pure data."""

from __future__ import annotations

import os
import re
import shutil

from conftest import checkpoint_dir, image_path
from ptyterm import Term, janus_env

BAR = set("\u2501\u2578\u257a")  # the bar's heavy line and its half ends: ━ ╸ ╺


def generate(out, n: int, stdout=None) -> Term:
    args = [
        "generate",
        "a red fox",
        "-n",
        str(n),
        "-b",
        "1",
        "--seed",
        "5",
        "--cfg",
        "1",
        "--dtype",
        "float32",
    ]
    args += ["-m", str(checkpoint_dir("janus-pro-1b-tiny")), "-o", str(out)]
    t = Term(args, janus_env(), cols=120, rows=90, stdout=stdout)
    try:
        assert t.wait(400) == 0, t.text()
    finally:
        t.close()
    return t


def test_paths_print_above_the_bar_on_a_shared_terminal(tmp_path):
    t = generate(tmp_path / "out", 3)
    lines = [line for line in t.lines() if line]
    paths = [str(tmp_path / "out" / f"a-red-fox-{i:03d}.png") for i in range(3)]
    at = [lines.index(p) for p in paths]  # each path a line of its own: nothing glued to it
    assert not any(BAR & set(line) for line in lines if ".png" in line)
    for i in at:  # each image's preview right under its path
        assert lines[i + 1 : i + 17] == ["\u2580" * 32] * 16
    bars = [line for line in lines if BAR & set(line) or line.startswith("generating")]
    assert len(bars) == 1 and "3/3" in bars[0], bars  # one finished bar, no stale ones
    assert lines.index(bars[0]) == at[-1] + 17 and lines[-1].startswith("3 images in ")
    cell = t.screen.buffer[t.lines().index(paths[0]) + 1][0]
    assert len(cell.fg) == 6 and len(cell.bg) == 6  # 24-bit colours (pyte keeps them as hex)


def test_a_piped_stdout_gets_the_paths_alone(tmp_path):
    with open(tmp_path / "stdout", "w") as f:
        t = generate(tmp_path / "out", 1, stdout=f.fileno())
    assert (tmp_path / "stdout").read_text() == str(tmp_path / "out" / "a-red-fox-000.png") + "\n"
    lines = [line for line in t.lines() if line]
    assert ".png" not in t.text() and lines.count("\u2580" * 32) == 16  # the terminal gets the preview
    assert [line for line in lines if BAR & set(line)][0].startswith("generating")
    assert lines[-1].startswith("1 image in ")
    assert os.path.getsize(tmp_path / "out" / "a-red-fox-000.png") > 0


def test_describe_over_a_folder_prints_each_answer_above_its_bar(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("grey0.png", "square0.png"):
        shutil.copy(image_path(name), folder / name)
    args = ["describe", str(folder), "--max-tokens", "6", "-b", "1", "--dtype", "float32"]
    t = Term([*args, "-m", str(checkpoint_dir("janus-pro-1b-tiny"))], janus_env(), cols=120, rows=60)
    try:
        assert t.wait(400) == 0, t.text()
    finally:
        t.close()
    lines = [line for line in t.lines() if line]
    headers = [line for line in lines if line.startswith("==> ")]
    assert headers == [f"==> {folder / 'grey0.png'} <==", f"==> {folder / 'square0.png'} <=="]
    bars = [line for line in lines if BAR & set(line)]
    assert len(bars) == 1 and bars[0].startswith("describing") and "2/2" in bars[0]
    assert lines.index(bars[0]) > lines.index(headers[1]) and re.match(r"\d+ tokens? in ", lines[-1])
