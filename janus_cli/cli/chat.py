"""`janus chat`: a multi-turn conversation about images, one line per user turn."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer

from janus_cli.cli import console, options, repl
from janus_cli.cli import preview as previews
from janus_cli.cli.options import OUTPUT, SAMPLING

HELP = """commands: /image PATH (attach an image to your next message), /imagine PROMPT (make an image),
/reset (forget the conversation), /help, /quit (or end of input)"""


def chat(
    images: Annotated[
        list[str] | None,
        typer.Argument(help="Images to talk about (attached to your first message).", show_default=False),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, rich_help_panel=SAMPLING)] = 512,
    temperature: Annotated[
        float,
        typer.Option("--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 (default) is greedy."),
    ] = 0.0,
    top_p: Annotated[
        float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            "-s",
            min=0,
            rich_help_panel=SAMPLING,
            help="Answer t (from 0) uses seed+t; /imagine too.",
        ),
    ] = 0,
    output: Annotated[
        str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Where /imagine writes its PNGs.")
    ] = ".",
    as_jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            rich_help_panel=OUTPUT,
            help='One JSON object per answer ({"turn", "user", "images", "text", "tokens"}) or '
            "/imagine image, instead of streamed text.",
        ),
    ] = False,
    quiet: options.Quiet = False,
    preview: previews.Preview = None,
    model: options.Model = "janus-pro-1b",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    quantize: options.Quantize = "none",
    revision: options.Revision = None,
    adapter: options.Adapter = None,
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
    with console.handle_errors():
        previews.choose(preview)
        if top_p is not None and top_p <= 0:
            raise console.fail("--top-p must be in (0, 1]")
        for name in images or []:
            from janus_cli.imageio import probe_image

            probe_image(name)  # a missing file fails before the model loads
        model_ = console.open_model(model, device, dtype, revision, quiet, quantize, adapter=adapter)
        talk = Talk(
            model_,
            model_.chat(images or [], temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
            seed,
            output,
            quiet,
            "jsonl" if as_jsonl else "text",
            list(images or []),
        )
        interactive = sys.stdin.isatty()
        if interactive and not quiet:
            console.err.print(HELP, markup=False)
        prompt = repl.Prompt(interactive)
        while (line := prompt.read()) is not None:
            if line.strip() in ("/quit", "/exit"):
                return
            with prompt.cancellable(streaming=not as_jsonl and not line.startswith("/")):
                talk.turn(line.strip())


class Talk:
    """The REPL's side of a conversation: its commands, and /imagine through the image run of
    `janus generate` (pictures numbered on from 0, seeded seed + k)."""

    def __init__(self, model, chat, seed: int, output: str, quiet: bool, mode: str, attached: list[str]):
        self.model, self.chat, self.seed, self.output, self.quiet, self.mode = (
            model,
            chat,
            seed,
            output,
            quiet,
            mode,
        )
        self.names = attached  # the images attached to the next message
        self.imagined = 0

    def turn(self, line: str) -> None:
        """One line of input; a failed turn is one `error: ...` line and the chat goes on."""
        from janus_cli.errors import JanusError

        command, _, rest = line.partition(" ") if line.startswith("/") else ("", "", line)
        try:
            if not line:
                return
            if command == "/image":
                self.attach(rest.strip())
            elif command == "/imagine":
                self.imagine(rest.strip())
            elif command == "/reset":
                self.chat.reset()
                self.names = []
            elif command == "/help":
                console.err.print(HELP, markup=False)
            elif command:
                console.err.print(f"error: unknown command {command} ({HELP})", markup=False)
            else:
                self.say(rest)
        except JanusError as e:
            console.err.print(f"error: {e}", markup=False)

    def attach(self, path: str) -> None:
        from janus_cli.errors import InputError

        if not path:
            raise InputError("/image needs a path")
        self.chat.attach([path])
        self.names.append(path)

    def say(self, text: str) -> None:
        # closing: a turn stopped by Ctrl-C ends its decoding loop now, not when it is collected
        with contextlib.closing(self.chat.stream(text)) as answer:
            for piece in answer:
                if self.mode != "jsonl":
                    typer.echo(piece, nl=False)
        if self.mode != "jsonl":
            typer.echo("")
        names, self.names = self.names, []
        if self.mode == "jsonl":
            answer = self.chat.history[-1]
            record = {
                "turn": len(self.chat.history) // 2 - 1,
                "user": text,
                "images": names,
                "text": answer["text"],
                "tokens": answer["tokens"],
                "seed": answer["seed"],
            }
            typer.echo(json.dumps(record, ensure_ascii=False))

    def imagine(self, prompt: str) -> None:
        """Make one image of PROMPT into the output folder; its path goes to stdout."""
        from janus_cli.cli import image_run
        from janus_cli.errors import InputError
        from janus_cli.pipelines.text_to_image import GenerateSettings

        if not prompt:
            raise InputError("/imagine needs a prompt")
        if self.model.family != "janus":
            raise InputError(
                f"/imagine needs a Janus or Janus-Pro model; {self.model.name} is {self.model.family}"
            )
        s = self.model.session
        image_run.run(
            image_run.Request(
                "janus",
                "/imagine",
                [{"prompt": prompt}],
                GenerateSettings,
                {"n": 1, "seed": self.seed + self.imagined},
                (),
                image_run.Output(self.output, mode=self.mode, quiet=self.quiet),
                s.name,
                dtype=str(s.dtype).removeprefix("torch."),
                quantize=s.quantize,
                first=self.imagined,
                loaded=self.model,
            )
        )
        self.imagined += 1
