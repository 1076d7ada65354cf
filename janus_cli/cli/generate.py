"""`janus generate`: text to image with Janus / Janus-Pro."""

from __future__ import annotations

from typing import Annotated

import typer

from janus_cli.cli import common, images, inputs, jobs
from janus_cli.cli.common import OUTPUT, SAMPLING

CHECKS = {"n": jobs.number(int, 1), "seed": jobs.number(int, 0), "cfg": jobs.number(float, 0), "temperature": jobs.number(float, 0),
          "top_k": jobs.number(int, 1, optional=True), "top_p": jobs.number(float, 1e-9, 1, optional=True)}  # fmt: skip
RECIPE = ("prompt", "seed", "cfg", "temperature", "top_k", "top_p", "model", "revision")


def generate(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="The prompt, or - to read one prompt per line from stdin.", show_default=False)] = None,
    prompts_file: common.PromptsFile = None,
    from_image: Annotated[str | None, typer.Option("--from-image", show_default=False,
        help="Re-make a PNG written by janus generate from its metadata (prompt, seed, sampling, model); options given here win.")] = None,  # fmt: skip
    n: Annotated[int, typer.Option("-n", "--num-images", min=1, rich_help_panel=SAMPLING, help="Images per prompt.")] = 1,
    cfg: Annotated[float, typer.Option("--cfg", min=0.0, rich_help_panel=SAMPLING, help="Classifier-free guidance scale (1 = off).")] = 5.0,
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 picks the most likely token.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)] = None,
    seed: Annotated[int | None, typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Image k uses seed+k (random if unset; printed).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=common.RUNTIME, help="Images per forward pass (memory bound).")] = 4,
    shard: common.Shard = None,
    output: Annotated[str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Folder, or name template with {i} {seed} {slug} {model} {date}.")] = ".",
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Replace existing files.")] = False,
    as_json: common.Json = False,
    as_jsonl: common.Jsonl = False,
    quiet: common.Quiet = False,
    model: common.Model = "janus-pro-1b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    revision: common.Revision = None,
) -> None:
    """Generate images from a text prompt; prints the path of each PNG written.

    [b]Examples[/b]

      janus generate "a red fox in the snow" -n 4

      janus generate "a lighthouse at dawn" -m janus-pro-7b --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus generate - --json

      janus generate --prompts-file prompts.jsonl -o out/ --jsonl

      janus generate --from-image out/a-red-fox-in-the-snow-002.png
    """
    with common.handle_errors():
        v = dict(prompt=prompt, seed=seed, cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p, model=model, revision=revision)
        if from_image is not None:
            v = images.apply_recipe(ctx, images.read_recipe(from_image), v, RECIPE)
        if v["top_p"] is not None and v["top_p"] <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        mode = inputs.output_mode(as_json, as_jsonl)
        options = {k: v[k] for k in ("cfg", "temperature", "top_k", "top_p")}
        work = jobs.make_jobs(jobs.read_prompts(v["prompt"], prompts_file), n, images.pick_seed(v["seed"]), options, CHECKS)
        work = jobs.shard_jobs(work, inputs.shard_range(sum(j.n for j in work), inputs.parse_shard(shard)))
        paths = images.plan_images(work, lambda j, k: j.seed + k, v["model"], output, overwrite)
        if not work:
            common.err.print("this shard has no images", markup=False)
            return
        session = common.open_model(v["model"], device, dtype, v["revision"], quiet, quantize)
        session.require("janus", "janus generate")
        from janus_cli.pipelines.text_to_image import GenerateSettings, generate_images, prompt_ids

        for p in {j.prompt for j in work}:
            prompt_ids(session, p)  # fail on an over-long prompt before any work
        base = {"model": v["model"], "revision": v["revision"], "dtype": str(session.dtype).removeprefix("torch."),
                "generator": f"janus-cli {images.version()}"}  # fmt: skip

        def run(job: jobs.Job):
            settings = GenerateSettings(n=job.n, seed=job.seed, batch_size=batch_size, **job.options)
            return generate_images(session, job.prompt, settings, first_index=job.first)

        images.write_images(work, run, paths, base, mode, quiet, overwrite)
