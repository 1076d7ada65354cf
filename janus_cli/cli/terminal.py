"""How results (stdout) and progress (stderr) share one terminal.

stdout is data and stderr is status. When both are the same terminal, a line written to stdout
while Rich's live progress bar is on screen lands after the bar's last frame, glued to its end,
and the next frame is drawn below it: every result sits on a stale bar. So while a bar is live
and stdout is that same terminal, a result line goes through the bar's console instead, which
clears the bar, prints the line and redraws the bar under it. When stdout is a pipe or a file
nothing changes: results go to stdout exactly as they would without a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer

from janus_cli.cli import console

_live = None  # the rich.progress.Progress on screen now, if any


def plural(count: int, word: str) -> str:
    """`1 image`, `3 images`, `0 tokens`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's buffer, a closed stream
        return None


def same_terminal() -> bool:
    """Whether stdout and stderr are one terminal (the same tty device), as in a shell with
    no redirection. Compares the streams Python writes to, so a captured stdout never counts."""
    out, err = _fd(sys.stdout), _fd(console.err.file)
    if out is None or err is None:
        return False
    try:
        if not (os.isatty(out) and os.isatty(err)):
            return False
        a, b = os.fstat(out), os.fstat(err)
    except OSError:
        return False
    return (a.st_rdev, a.st_ino, a.st_dev) == (b.st_rdev, b.st_ino, b.st_dev)


def _on_screen():
    """The live progress bar, when one is being drawn."""
    bar = _live
    return bar if bar is not None and bar.live.is_started else None


def result(line: str) -> None:
    """Write LINE (a data line: a path, a JSON record, an answer with its header) to stdout;
    on a shared terminal with a live bar, above the bar, which is redrawn below it."""
    bar = _on_screen()
    if bar is not None and same_terminal():
        from rich.text import Text

        sys.stdout.flush()
        bar.console.print(Text(line), soft_wrap=True)
    else:
        typer.echo(line)


def counted(bar, description: str, total: int, *callbacks):
    """CALLBACKS, each also advancing a new task DESCRIPTION (of TOTAL items) on BAR per call."""
    task = bar.add_task(description, total=total)

    def counting(callback):
        def call(*args):
            callback(*args)
            bar.advance(task)

        return call

    return [counting(callback) for callback in callbacks]


class _Raw:
    """Ready-made terminal text (escape sequences included) that Rich passes through as is."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        for line in self.lines:
            yield Segment(line)
            yield Segment.line()


def status_lines(lines: list[str]) -> None:
    """Write LINES (terminal text, escape sequences included) to stderr, above the live bar
    if one is on screen."""
    bar = _on_screen()
    sys.stdout.flush()  # on a shared terminal, the results before them come first
    if bar is not None:
        bar.console.print(_Raw(lines), soft_wrap=True)
        return
    console.err.file.write("".join(f"{line}\n" for line in lines))
    console.err.file.flush()


@contextlib.contextmanager
def progress(quiet: bool, transient: bool = False) -> Iterator:
    """A Rich progress bar on stderr (a disabled one when stderr is not a terminal or QUIET)
    that `result` and `status_lines` print above. Not TRANSIENT, it stays as the finished bar."""
    global _live
    from rich import progress as rp

    bar = rp.Progress(
        rp.TextColumn("{task.description}"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TimeElapsedColumn(),
        rp.TimeRemainingColumn(),
        console=console.err,
        disable=not console.show_progress(quiet),
        transient=transient,
        redirect_stdout=same_terminal(),  # a stray print() lands above the bar too
    )
    with bar:
        before, _live = _live, bar
        try:
            yield bar
        finally:
            _live = before
