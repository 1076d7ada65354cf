"""`janus generate`: text to image with Janus / Janus-Pro."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import common
from janus_cli.cli.common import OUTPUT, SAMPLING
from janus_cli.cli.output import plan_paths, png_metadata


def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt, or - to read one prompt per line from stdin.")],
    n: Annotated[int, typer.Option("-n", "--num-images", min=1, rich_help_panel=SAMPLING, help="Images per prompt.")] = 1,
    cfg: Annotated[float, typer.Option("--cfg", min=0.0, rich_help_panel=SAMPLING, help="Classifier-free guidance scale (1 = off).")] = 5.0,
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 picks the most likely token.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)] = None,
    seed: Annotated[int | None, typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Image k uses seed+k (random if unset; printed).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=common.RUNTIME, help="Images per forward pass (memory bound).")] = 4,
    output: Annotated[str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Folder, or name template with {i} {seed} {slug} {model} {date}.")] = ".",
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Replace existing files.")] = False,
    as_json: common.Json = False,
    quiet: common.Quiet = False,
    model: common.Model = "janus-pro-1b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    revision: common.Revision = None,
) -> None:
    """Generate images from a text prompt; prints the path of each PNG written.

    [b]Examples[/b]

      janus generate "a red fox in the snow" -n 4

      janus generate "a lighthouse at dawn" -m janus-pro-7b --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus generate - --json
    """
    import secrets
    import time

    with common.handle_errors():
        if top_p is not None and top_p <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        prompts = common.read_lines(prompt)
        if not prompts or any(not p.strip() for p in prompts):
            raise common.fail("empty prompt")
        seed = secrets.randbelow(2**31) if seed is None else seed
        planned = [{"index": j * n + k, "seed": seed + k, "prompt": p, "model": model} for j, p in enumerate(prompts) for k in range(n)]
        paths = plan_paths(output, planned, overwrite)
        session = common.open_model(model, device, dtype, revision, quiet)
        session.require("janus", "janus generate")
        from janus_cli.imageio import save_png
        from janus_cli.pipelines.events import ImageReady, Step
        from janus_cli.pipelines.text_to_image import GenerateSettings, generate_images, prompt_ids

        for p in prompts:
            prompt_ids(session, p)  # fail on an over-long prompt before any work
        settings = GenerateSettings(n=n, cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, batch_size=batch_size)
        base = {"model": model, "revision": revision, "cfg": cfg, "temperature": temperature, "top_k": top_k,
                "top_p": top_p, "dtype": str(session.dtype).removeprefix("torch."), "generator": f"janus-cli {_version()}"}  # fmt: skip
        if not quiet:
            common.err.print(f"seed {seed}", markup=False)
        records, t0 = [], time.perf_counter()
        with common.progress_bar(quiet) as bar:
            task = bar.add_task("generating", total=len(planned) * session.config.image_tokens)
            for j, p in enumerate(prompts):
                for event in generate_images(session, p, settings, first_index=j * n):
                    if isinstance(event, Step):
                        bar.update(task, completed=j * n * session.config.image_tokens + event.done)
                    elif isinstance(event, ImageReady):
                        record = {**base, "prompt": p, "seed": event.seed, "index": event.index, "path": str(paths[event.index])}
                        save_png(event.pixels, paths[event.index], png_metadata(record), overwrite)
                        records.append(record)
                        if not as_json:
                            typer.echo(record["path"])
        seconds = time.perf_counter() - t0
        if as_json:
            typer.echo(json.dumps({"images": records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2))
        if not quiet:
            common.err.print(f"{len(records)} images in {seconds:.1f}s ({len(records) / seconds:.3f} images/s)", markup=False)


def _version() -> str:
    from janus_cli import __version__

    return __version__
