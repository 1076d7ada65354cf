"""`janus generate`: text to image with Janus / Janus-Pro."""

from __future__ import annotations

from typing import Annotated

import typer

from janus_cli.cli import common, images
from janus_cli.cli.common import OUTPUT, SAMPLING


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
    with common.handle_errors():
        if top_p is not None and top_p <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        prompts = images.read_prompts(prompt)
        seed = images.pick_seed(seed)
        paths = images.plan_images(prompts, n, lambda k: seed + k, model, output, overwrite)
        session = common.open_model(model, device, dtype, revision, quiet)
        session.require("janus", "janus generate")
        from janus_cli.pipelines.text_to_image import GenerateSettings, generate_images, prompt_ids

        for p in prompts:
            prompt_ids(session, p)  # fail on an over-long prompt before any work
        settings = GenerateSettings(n=n, cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, batch_size=batch_size)
        base = {"model": model, "revision": revision, "cfg": cfg, "temperature": temperature, "top_k": top_k,
                "top_p": top_p, "dtype": str(session.dtype).removeprefix("torch."), "generator": f"janus-cli {images.version()}"}  # fmt: skip
        images.write_images(
            prompts, n, session.config.image_tokens, lambda j, p: generate_images(session, p, settings, first_index=j * n),
            paths, base, seed, as_json, quiet, overwrite,
        )  # fmt: skip
