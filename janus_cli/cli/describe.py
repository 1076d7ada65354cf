"""`janus describe`: answer a question about images (all four models)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import common
from janus_cli.cli.common import OUTPUT, SAMPLING


def describe(
    images: Annotated[list[str], typer.Argument(help="Image files (any format Pillow reads).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The question. Use <image_placeholder> to place images yourself.")] = "Describe this image in detail.",
    together: Annotated[bool, typer.Option("--together", help="One conversation about all the images, instead of one per image.")] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, rich_help_panel=SAMPLING)] = 512,
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 (default) is greedy, like the official inference.")] = 0.0,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)] = None,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING)] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=common.RUNTIME)] = 4,
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="One JSON object per image (per line) on stdout.")] = False,
    quiet: common.Quiet = False,
    model: common.Model = "janus-pro-1b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    revision: common.Revision = None,
) -> None:
    """Describe images, or answer a question about them; the answer streams to stdout.

    [b]Examples[/b]

      janus describe photo.jpg

      janus describe a.png b.png -p "What changed between these two?" --together

      janus describe *.jpg --json -m janus-pro-7b
    """
    import time

    with common.handle_errors():
        if top_p is not None and top_p <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        from janus_cli.imageio import load_image

        pictures = [load_image(path) for path in images]  # fail on a bad file before loading the model
        session = common.open_model(model, device, dtype, revision, quiet)
        from janus_cli.pipelines.events import TextDelta, TextReady
        from janus_cli.pipelines.image_to_text import DescribeSettings, describe as run

        groups = [pictures] if together else [[p] for p in pictures]
        names = [", ".join(images)] if together else images
        settings = DescribeSettings(question=prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size)
        base = {"model": model, "prompt": prompt, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
        stream = not as_json and len(groups) == 1
        t0, tokens = time.perf_counter(), 0
        for event in run(session, groups, settings):
            if isinstance(event, TextDelta) and stream:
                typer.echo(event.text, nl=False)
            elif isinstance(event, TextReady):
                tokens += event.tokens
                if as_json:
                    typer.echo(json.dumps({"image": names[event.index], "text": event.text, **base, "tokens": event.tokens}, ensure_ascii=False))
                elif stream:
                    typer.echo()
                else:
                    typer.echo(f"==> {names[event.index]} <==\n{event.text}\n")
        seconds = time.perf_counter() - t0
        if not quiet:
            common.err.print(f"{tokens} tokens in {seconds:.1f}s ({tokens / seconds:.1f} tokens/s)", markup=False)
