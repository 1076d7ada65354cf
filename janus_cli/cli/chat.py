"""`janus chat`: a multi-turn conversation about images, one line per user turn."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from janus_cli.cli import common, repl
from janus_cli.cli import preview as previews
from janus_cli.cli.common import OUTPUT, SAMPLING

HELP = """commands: /image PATH (attach an image to your next message), /imagine PROMPT (make an image),
/reset (forget the conversation), /help, /quit (or end of input)"""


def chat(
    images: Annotated[list[str] | None, typer.Argument(help="Images to talk about (attached to your first message).", show_default=False)] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, rich_help_panel=SAMPLING)] = 512,
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 (default) is greedy.")] = 0.0,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)] = None,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Answer t (from 0) uses seed+t; /imagine too.")] = 0,
    output: Annotated[str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Where /imagine writes its PNGs.")] = ".",
    as_jsonl: Annotated[bool, typer.Option("--jsonl", rich_help_panel=OUTPUT,
        help='One JSON object per answer ({"turn", "user", "images", "text", "tokens"}) or /imagine image, instead of streamed text.')] = False,  # fmt: skip
    quiet: common.Quiet = False,
    preview: previews.Preview = None,
    model: common.Model = "janus-pro-1b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    revision: common.Revision = None,
) -> None:
    """Talk about images with the model: each line you type is a turn; answers stream to stdout.

    In a terminal you get a `>` prompt with line editing and history (arrow keys, Ctrl-R).

    History: $XDG_STATE_HOME/janus/chat_history, or the file JANUS_HISTORY names (0: keep none).

    A line ending in \\ goes on on the next. Ctrl-C stops an answer or image being made.

    Ctrl-C twice at the prompt, or Ctrl-D, leaves. Piped, every line of stdin is a turn.

    [b]Examples[/b]

      janus chat photo.jpg

      printf 'What is this?\\nAnd its colour?\\n' | janus chat photo.jpg -q

    Inside: /image PATH, /imagine PROMPT, /reset, /help, /quit.
    """
    from janus_cli.cli.conversation import Conversation

    with common.handle_errors():
        previews.choose(preview)
        if top_p is not None and top_p <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        for name in images or []:
            from janus_cli.imageio import probe_image

            probe_image(name)  # a missing file fails before the model loads
        session = common.open_model(model, device, dtype, revision, quiet, quantize)
        talk = Conversation(session, max_tokens, temperature, top_p, seed, output, quiet, "jsonl" if as_jsonl else "text")
        for name in images or []:
            talk.attach(name)
        interactive = sys.stdin.isatty()
        if interactive and not quiet:
            common.err.print(HELP, markup=False)
        prompt = repl.Prompt(interactive)
        while (line := prompt.read()) is not None:
            if line.strip() in ("/quit", "/exit"):
                return
            with prompt.cancellable(streaming=not as_jsonl and not line.startswith("/")):
                _turn(talk, line.strip(), as_jsonl)


def _turn(talk, line: str, as_jsonl: bool) -> None:
    """One line of input; a failed turn is one `error: ...` line and the chat goes on."""
    from janus_cli.errors import JanusError

    command, _, rest = line.partition(" ") if line.startswith("/") else ("", "", line)
    try:
        if not line:
            return
        if command == "/image":
            talk.attach(rest.strip())
        elif command == "/imagine":
            talk.imagine(rest.strip())
        elif command == "/reset":
            talk.reset()
        elif command == "/help":
            common.err.print(HELP, markup=False)
        elif command:
            common.err.print(f"error: unknown command {command} ({HELP})", markup=False)
        elif as_jsonl:
            for _ in talk.say(rest):
                pass
            typer.echo(json.dumps(talk.last, ensure_ascii=False))
        else:
            for text in talk.say(rest):
                typer.echo(text, nl=False)
            typer.echo("")
    except JanusError as e:
        common.err.print(f"error: {e}", markup=False)
