"""The `janus chat` prompt as people expect a REPL: line editing and history (readline), a
trailing backslash to continue a message, and Ctrl-C that stops the answer being made.

Line editing needs stdin and stdout to be terminals: Python's `input()` only hands the line to
readline then, and readline draws the prompt on stdout. Otherwise (stdout piped, say) the
prompt goes to stderr and the line is read as typed, so stdout stays data.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from janus_cli.cli import console

HISTORY_ENV = "JANUS_HISTORY"
HISTORY_LENGTH = 1000
PROMPT, MORE = "> ", "... "
OFF = ("0", "off", "no", "false")


def history_path() -> Path | None:
    """Where the chat history is kept: $JANUS_HISTORY (a file, or 0 for none), else
    $XDG_STATE_HOME/janus/chat_history (~/.local/state when XDG_STATE_HOME is unset)."""
    value = os.environ.get(HISTORY_ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "janus" / "chat_history"


def _readline():
    try:
        import readline
    except ImportError:  # Windows without pyreadline
        return None
    return readline


class Prompt:
    """Reads the user's messages: one per line, or over several lines ending in a backslash."""

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.readline = _readline() if interactive and sys.stdout.isatty() else None
        self.history = history_path() if self.readline else None
        self.interrupted = False  # the last prompt ended with Ctrl-C
        if self.history is not None:
            self.readline.set_history_length(HISTORY_LENGTH)
            with contextlib.suppress(OSError):
                self.readline.read_history_file(self.history)

    def read(self) -> str | None:
        """The next message (continued lines joined with newlines), or None to leave: end of
        input (Ctrl-D), or Ctrl-C at the prompt twice in a row."""
        lines: list[str] = []
        while True:
            try:
                line = self._line(MORE if lines else PROMPT)
            except KeyboardInterrupt:
                if self.interrupted:
                    return None
                self.interrupted = True
                try:
                    console.err.print("\n(Ctrl-C again or Ctrl-D to leave)", markup=False)
                except KeyboardInterrupt:  # again while the hint was being written
                    return None
                lines = []
                continue
            except EOFError:
                if self.interactive:
                    console.err.print("", markup=False)  # the shell's prompt on a line of its own
                return None
            self.interrupted = False
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            return "\n".join([*lines, line])

    def _line(self, prompt: str) -> str:
        """One line, without its newline; EOFError at the end of input."""
        if self.readline is not None:
            before = self.readline.get_current_history_length()
            line = input(prompt)
            if self.history is not None and self.readline.get_current_history_length() > before:
                self._remember()
            return line
        if self.interactive:
            console.err.print(prompt, end="", markup=False)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def _remember(self) -> None:
        """Append the line just entered to the history file (history is a convenience: a
        file that cannot be written is skipped, quietly)."""
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            if not self.history.exists():
                self.history.touch(mode=0o600)
            self.readline.append_history_file(1, self.history)
        except (OSError, AttributeError):  # AttributeError: a readline without append (libedit before 3.5)
            with contextlib.suppress(OSError):
                self.readline.write_history_file(self.history)

    @contextlib.contextmanager
    def cancellable(self, streaming: bool) -> Iterator[None]:
        """Run one turn; in a terminal, Ctrl-C stops it and the chat goes on at the prompt.
        STREAMING: the turn writes an answer to stdout, whose line a stop ends."""
        try:
            yield
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            if streaming:
                sys.stdout.write("\n")
                sys.stdout.flush()
            console.err.print("(stopped)", markup=False)
