"""A command run under a real pseudo-terminal, its output fed to the `pyte` terminal emulator.

stdin, stdout and stderr of the child are all the pty's slave, as in a shell with no
redirection; what a person would see is `Term.screen`. Every read is bounded in time.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable

import pyte

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def janus_env(**extra: str) -> dict[str, str]:
    """The environment of a `janus` run in a plain 24-bit-colour terminal: no JANUS_* or
    NO_COLOR from the caller, this worktree's janus_cli first on the path."""
    drop = ("NO_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_") and k not in drop}
    # One torch thread: on a shared machine, spinning threads cost more than they bring.
    defaults = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "PYTHONPATH": ROOT, "JANUS_HISTORY": "0"}
    env.update({**defaults, "OMP_NUM_THREADS": "1", **extra})
    return env


class Term:
    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cols: int = 120,
        rows: int = 100,
        stdout: int | None = None,
    ):
        """Run `python -m janus_cli ARGS` on a COLS x ROWS terminal; STDOUT: a descriptor to
        send the child's stdout to instead (a pipe or file, as `janus ... > file`)."""
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.returncode: int | None = None
        pid, fd = pty.fork()
        if pid == 0:  # the child: its terminal has the emulator's size before anything starts
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                if stdout is not None:
                    os.dup2(stdout, 1)
                os.execve(sys.executable, [sys.executable, "-m", "janus_cli", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def _pump(self, timeout: float) -> bool:
        """Read what the child wrote within TIMEOUT seconds; False once the child closed the pty."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            return False
        if not data:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def read_until(self, done: Callable[[Term], bool], timeout: float, what: str = "") -> None:
        """Read until DONE(self) holds; fail the test, showing the screen, after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while not done(self):
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.2)) and not done(self):
                raise AssertionError(
                    f"timed out waiting for {what or done}; {self.signals()}; screen:\n{self.text()}"
                )

    def signals(self) -> str:
        """The child's signal masks (hex, bit n-1 for signal n) as /proc shows them: SigBlk,
        SigIgn, SigCgt; for a test that waits on a signal's effect."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                return " ".join(line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
        except OSError as e:
            return f"no /proc status ({e})"

    def contains(self, needle: bytes | str) -> bool:
        return (needle.encode() if isinstance(needle, str) else needle) in self.raw

    def send(self, data: bytes | str) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip()

    def wait(self, timeout: float) -> int:
        """Read to the end of the output and reap the child; its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._pump(0.2):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
            time.sleep(0.05)
        raise AssertionError(f"the command did not end in {timeout}s; screen:\n{self.text()}")

    def close(self) -> None:
        """Kill the child if it still runs; release the pty."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)
