"""Image previews in the terminal and `janus show`: the colours a terminal emulator draws, and
no preview where there is no terminal or NO_COLOR is set."""

from __future__ import annotations

import json
import subprocess
import sys

import pyte
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from ptyterm import Term, janus_env

from janus_cli.cli import preview, repl
from janus_cli.cli.terminal import plural

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 160, 0), (0, 0, 255), (250, 220, 10)
RECIPE = {
    "model": "janus-pro-1b",
    "cfg": 5.0,
    "temperature": 1.0,
    "top_k": None,
    "prompt": "a red fox in the snow",
    "seed": 42,
    "index": 3,
}

RECIPE_LINES = [
    "  prompt: a red fox in the snow",
    "  seed: 42",
    "  model: janus-pro-1b",
    "  cfg: 5.0",
    "  temperature: 1.0",
]


def hexed(rgb: tuple[int, int, int]) -> str:
    return "{:02x}{:02x}{:02x}".format(*rgb)


def checkerboard(path, recipe: dict | None = RECIPE, size: int = 64):
    """A 2x2 colour checkerboard, upscaled to SIZE pixels a side; with RECIPE as its janus-cli chunk."""
    small = Image.new("RGB", (2, 2))
    small.putdata([RED, GREEN, BLUE, YELLOW])  # row by row: red green / blue yellow
    info = PngInfo()
    if recipe is not None:
        info.add_text("janus-cli", json.dumps(recipe))
    small.resize((size, size), Image.Resampling.NEAREST).save(path, pnginfo=info)
    return path


def expected(x: int, row: int, width: int = 32) -> str:
    """The colour of cell (X, ROW) of the checkerboard's WIDTH-column preview (WIDTH/2 rows)."""
    top = row < width // 4
    left = x < width // 2
    return hexed(
        {(True, True): RED, (True, False): GREEN, (False, True): BLUE, (False, False): YELLOW}[top, left]
    )


def assert_checkerboard(screen: pyte.Screen, first_row: int, column: int = 0, width: int = 32) -> None:
    for row in range(width // 2):
        for x in range(width):
            cell = screen.buffer[first_row + row][column + x]
            assert cell.data == "\u2580", (row, x)
            assert (cell.fg, cell.bg) == (expected(x, row), expected(x, row)), (row, x, cell)


def test_render_draws_each_half_block_in_the_colours_of_its_two_pixels(tmp_path):
    rows = preview.render(Image.open(checkerboard(tmp_path / "c.png")))
    assert len(rows) == 16  # 32 columns of a square image: 32 pixels high, two per row
    screen = pyte.Screen(40, 20)
    pyte.ByteStream(screen).feed("\r\n".join(rows).encode())
    assert_checkerboard(screen, 0)
    after = screen.buffer[0][32]
    assert after.data == " " and after.bg == "default"  # colours reset after each row
    # Top and bottom halves of one cell differ where a row straddles two colours.
    stripes = Image.new("RGB", (2, 2))
    stripes.putdata([RED, RED, BLUE, BLUE])
    (row,) = preview.render(stripes, width=2)
    assert row == "\x1b[38;2;255;0;0m\x1b[48;2;0;0;255m\u2580" * 2 + "\x1b[0m"


def test_previews_need_a_terminal_and_no_NO_COLOR(monkeypatch):
    monkeypatch.setattr(preview.os, "isatty", lambda fd: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    preview.choose(None)
    assert preview.enabled() and not preview.enabled(quiet=True)
    preview.choose(True)
    assert preview.enabled(quiet=True)  # --preview wins over -q
    monkeypatch.setenv("NO_COLOR", "1")
    assert not preview.enabled()  # but never over NO_COLOR
    monkeypatch.delenv("NO_COLOR")
    preview.choose(False)
    assert not preview.enabled()
    preview.choose(None)
    monkeypatch.setattr(preview.os, "isatty", lambda fd: False)
    assert not preview.enabled()


def test_plurals():
    assert [plural(n, "image") for n in (0, 1, 3)] == ["0 images", "1 image", "3 images"]
    assert plural(1, "token") == "1 token"


def test_history_file_follows_xdg_and_janus_history(monkeypatch, tmp_path):
    monkeypatch.delenv("JANUS_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert repl.history_path() == tmp_path / "state" / "janus" / "chat_history"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert repl.history_path() == tmp_path / "home" / ".local" / "state" / "janus" / "chat_history"
    monkeypatch.setenv("JANUS_HISTORY", str(tmp_path / "mine"))
    assert repl.history_path() == tmp_path / "mine"
    for off in ("0", "off"):
        monkeypatch.setenv("JANUS_HISTORY", off)
        assert repl.history_path() is None


def janus(args: list[str]) -> subprocess.CompletedProcess:
    """`janus ARGS` with pipes for stdout and stderr: no terminal."""
    return subprocess.run(
        [sys.executable, "-m", "janus_cli", *args],
        env=janus_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def show_in_terminal(args: list[str], env: dict[str, str]) -> Term:
    t = Term(["show", *args], env, cols=80, rows=60)
    try:
        assert t.wait(60) == 0, t.text()
    finally:
        t.close()
    return t


def test_show_previews_the_image_and_prints_its_recipe_under_it(tmp_path):
    png, plain = (
        str(checkerboard(tmp_path / "fox.png")),
        str(checkerboard(tmp_path / "plain.png", recipe=None)),
    )
    t = show_in_terminal([png, plain], janus_env())
    lines = t.lines()
    assert lines[0] == png
    assert_checkerboard(t.screen, 1)
    assert lines[17:23] == [*RECIPE_LINES, plain]
    assert_checkerboard(t.screen, 23)  # an image without a recipe is still shown, and says so
    assert lines[39].startswith("  (no janus-cli recipe")


def test_no_preview_with_NO_COLOR_or_without_a_terminal(tmp_path):
    png = str(checkerboard(tmp_path / "fox.png"))
    recipe = [png, *RECIPE_LINES]
    for env in (janus_env(NO_COLOR="1"), janus_env(JANUS_PREVIEW="0")):
        t = show_in_terminal([png], env)
        assert "\u2580" not in t.text() and b"\x1b[38;2" not in t.raw
        assert t.text().splitlines() == recipe
    piped = janus(["show", png, "--preview"])
    assert piped.returncode == 0 and piped.stderr == ""  # --preview asks; a pipe is no terminal
    assert piped.stdout.splitlines() == recipe
    as_json = janus(["show", png, str(tmp_path / "missing.png"), "--json"])
    assert as_json.returncode == 1 and json.loads(as_json.stdout) == {"path": png, "recipe": RECIPE}
    assert as_json.stderr.splitlines() == [
        f"error: {tmp_path / 'missing.png'}: no such file",
        "error: 1 of 2 images could not be shown",
    ]
