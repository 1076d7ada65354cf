"""`janus chat` typed at in a real terminal: line editing and history with the arrow keys, a
history kept across runs, Ctrl-C that stops an answer (and leaves no trace of it), Ctrl-C twice
to leave. The tiny model answers gibberish; what matters is which question it answers."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import checkpoint_dir
from ptyterm import Term, janus_env

from janus_cli.cli import repl

UP, DOWN, CTRL_C = b"\x1b[A", b"\x1b[B", b"\x03"
TOKENS = "120"  # long enough that an answer still runs when Ctrl-C comes


def prompts(count: int):
    return lambda t: t.raw.count(b"\n> ") >= count


def prompt_after(question: str):
    """Whether a prompt has come after the echo of QUESTION: its answer is complete."""
    echo = f"> {question}\r\n".encode()
    return lambda t: (i := t.raw.find(echo)) >= 0 and b"\n> " in t.raw[i + len(echo) :]


def started(question: str, shown: int = 24):
    """Whether the answer to QUESTION is under way: SHOWN bytes of it after the question's echo.
    A Ctrl-C sent at the answer's very first byte was not acted on in several runs of the suite
    on 2026-12-07 (cause not found; alone the test passed); a user stops an answer they read."""
    echo = f"> {question}\r\n".encode()
    return lambda t: (i := t.raw.find(echo)) >= 0 and len(t.raw) >= i + len(echo) + shown


def prompt_after_hint(t: Term) -> bool:
    """Whether a prompt has come after the hint that one more Ctrl-C leaves."""
    return (i := t.raw.find(b"Ctrl-C again")) >= 0 and b"\n> " in t.raw[i:]


def at_the_prompt(t: Term, keys: bytes) -> None:
    """Send KEYS a moment after a prompt appeared, as a person would. Sent at once, a Ctrl-C
    can land between readline drawing the prompt and CPython's readline module starting to wait
    for a key (Modules/readline.c checks for signals only when that wait is interrupted): the
    KeyboardInterrupt then waits for the next key. Seen on a loaded machine, never by hand."""
    time.sleep(0.5)
    t.send(keys)


def answer_after(t: Term, question: str) -> str:
    """The streamed answer to QUESTION (typed, first time): between its echo and the next prompt."""
    raw = bytes(t.raw)
    start = raw.index(f"> {question}\r\n".encode()) + len(question) + 4
    return raw[start : raw.index(b"\r\n> ", start)].decode("utf-8", "replace").replace("\r\n", "\n")


def test_chat_recalls_lines_stops_answers_and_keeps_history(tmp_path):
    history = tmp_path / "chat_history"
    history.write_text("from last time\n")  # an earlier run's
    model = str(checkpoint_dir("janus-pro-1b-tiny"))
    args = ["chat", "-m", model, "--dtype", "float32", "--max-tokens", TOKENS, "-o", str(tmp_path)]
    t = Term(args, janus_env(JANUS_HISTORY=str(history)), cols=120, rows=200)
    try:
        t.read_until(prompts(1), 300, "the first prompt")
        t.send("what is it\r")
        t.read_until(prompts(2), 300, "the first answer")
        mark = len(t.raw)
        t.send(UP + UP)  # back past this run's line to the last run's
        t.read_until(lambda t: b"from last time" in t.raw[mark:], 30, "the last run's line")
        t.send(DOWN + b"\r")  # forward again: the same question, asked again
        t.read_until(prompts(3), 300, "the second answer")
        assert [line for line in t.lines() if line[:2] in ("> ", ">")] == ["> what is it"] * 2 + [">"]

        t.send("tell me more\r")
        t.read_until(started("tell me more"), 300, "the third answer to start")
        t.send(CTRL_C)
        t.read_until(lambda t: prompts(4)(t) and b"(stopped)" in t.raw, 60, "the prompt after Ctrl-C")
        t.send("and now\r")
        # the next prompt after this question's echo (a stopped answer's text may hold "\n> ")
        t.read_until(prompt_after("and now"), 300, "the answer after the stopped one")
        at_the_prompt(t, CTRL_C)
        t.read_until(prompt_after_hint, 30, "the hint, then a prompt")
        at_the_prompt(t, CTRL_C)
        assert t.wait(60) == 0, t.text()
    finally:
        t.close()
    screen = [line for line in t.lines() if line]
    stopped = screen.index("> tell me more")
    assert stopped < screen.index("(stopped)") == screen.index("> and now") - 1
    assert history.read_text().splitlines() == ["from last time", "what is it", "tell me more", "and now"]

    # The stopped turn left no trace: the answer after it is the one a chat without it gives.
    turns = "what is it\nwhat is it\nand now\n"
    piped = subprocess.run(
        [sys.executable, "-m", "janus_cli", *args, "-q"],
        input=turns,
        env=janus_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert piped.returncode == 0, piped.stderr
    first, after = answer_after(t, "what is it"), answer_after(t, "and now")
    assert first and after and piped.stdout.endswith(f"\n{after}\n")
    assert piped.stdout.startswith(f"{first}\n")


class Keys:
    """A stdin whose lines are LINES; KeyboardInterrupt where a line is None (Ctrl-C)."""

    def __init__(self, *lines: str | None):
        self.lines = list(lines)

    def readline(self) -> str:
        if not self.lines:
            return ""
        line = self.lines.pop(0)
        if line is None:
            raise KeyboardInterrupt
        return line + "\n"


def read_all(prompt: repl.Prompt) -> list[str]:
    out = []
    while (message := prompt.read()) is not None:
        out.append(message)
    return out


def test_a_trailing_backslash_continues_and_two_ctrl_c_leave(monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "stdin", Keys("look at this \\", "and this", "/reset", None, "again", None, None, "never")
    )
    prompt = repl.Prompt(interactive=True)  # stdout is no terminal here: no readline, the prompt on stderr
    assert prompt.readline is None
    assert read_all(prompt) == ["look at this \nand this", "/reset", "again"]
    err = capsys.readouterr().err
    assert err.count("> ") == 6 and err.count("... ") == 1 and err.count("Ctrl-C again or Ctrl-D") == 2
    monkeypatch.setattr(
        sys, "stdin", Keys("one", "two \\", None, "three")
    )  # Ctrl-C drops a half-typed message
    assert read_all(repl.Prompt(interactive=False)) == ["one", "three"]


def test_a_second_ctrl_c_while_the_hint_is_written_leaves(monkeypatch):
    """Two quick Ctrl-Cs: the second may land while the first one's hint is being written; the
    chat then leaves as after two at the prompt (it escaped as `error: interrupted`, exit 130)."""
    from janus_cli.cli import console

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Keys("one", None, "never"))
    monkeypatch.setattr(console.err, "print", interrupted)
    try:
        assert read_all(repl.Prompt(interactive=False)) == ["one"]
    except KeyboardInterrupt:  # caught here: escaping, it would stop the whole pytest run
        pytest.fail("the second Ctrl-C escaped the prompt")


def test_ctrl_c_stops_a_turn_in_a_terminal_only(capsys):
    prompt = repl.Prompt(interactive=True)
    with prompt.cancellable(streaming=True):
        print("half an answ", end="")
        raise KeyboardInterrupt
    out, err = capsys.readouterr()
    assert out == "half an answ\n" and err == "(stopped)\n"
    with pytest.raises(KeyboardInterrupt), repl.Prompt(interactive=False).cancellable(streaming=True):
        raise KeyboardInterrupt  # piped, Ctrl-C ends the chat (`error: interrupted`, exit 130)
