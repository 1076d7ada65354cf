"""A small picture of each image written, on stderr, when stderr is a terminal.

Each character cell holds two pixels: the upper half block `▀` in the top pixel's colour
(foreground) over the bottom pixel's (background), both in 24-bit colour. That needs no
inline-image protocol, so it works in any modern terminal (and in tmux); a 384x384 image
becomes 32 columns by 16 rows.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from janus_cli.cli import terminal
from janus_cli.cli.options import OUTPUT

WIDTH = 32  # columns
UPPER_HALF = "\u2580"
RESET = "\x1b[0m"

PREVIEW_HELP = (
    "A small colour preview of each image on stderr (default: in a terminal, unless -q or NO_COLOR)."
)
Preview = Annotated[
    bool | None,
    typer.Option(
        "--preview/--no-preview",
        envvar="JANUS_PREVIEW",
        rich_help_panel=OUTPUT,
        show_default=False,
        help=PREVIEW_HELP,
    ),
]

_wanted: bool | None = None  # --preview / --no-preview; None: unless -q


def choose(flag: bool | None) -> None:
    """Record the command's --preview/--no-preview (None when neither was given)."""
    global _wanted
    _wanted = flag


def enabled(quiet: bool = False) -> bool:
    """Previews go to a terminal only, never with NO_COLOR (https://no-color.org) set."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        if not os.isatty(sys.stderr.fileno()):
            return False
    except (AttributeError, OSError, ValueError):
        return False
    return not quiet if _wanted is None else _wanted


def render(image, width: int = WIDTH) -> list[str]:
    """IMAGE (a PIL image) as WIDTH columns of half blocks, one string per terminal row."""
    from PIL import Image

    rgb = image.convert("RGB")
    height = max(2, round(width * rgb.height / rgb.width / 2) * 2)  # pixels: two per row
    small = rgb.resize((width, height), Image.Resampling.BOX)  # each cell the mean of its area
    px = small.load()
    rows = []
    for y in range(0, height, 2):
        cells = []
        for x in range(width):
            (r, g, b), (r2, g2, b2) = px[x, y], px[x, y + 1]
            cells.append(f"\x1b[38;2;{r};{g};{b}m\x1b[48;2;{r2};{g2};{b2}m{UPPER_HALF}")
        rows.append("".join(cells) + RESET)
    return rows


def show(path, quiet: bool = False) -> None:
    """Preview the image file PATH on stderr, if previews are on."""
    if not enabled(quiet):
        return
    from PIL import Image

    with Image.open(path) as img:
        terminal.status_lines(render(img))
