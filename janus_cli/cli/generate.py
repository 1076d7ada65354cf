"""`janus generate`: text to image with Janus / Janus-Pro."""

from __future__ import annotations

from typing import Annotated

import typer

from janus_cli.cli import console, engines, image_run, inputs, jobs, options, recipes, tables
from janus_cli.cli import preview as previews
from janus_cli.cli.options import SAMPLING

RECIPE = (
    "prompt",
    "seed",
    "cfg",
    "temperature",
    "top_k",
    "top_p",
    "model",
    "revision",
    "quantize",
    "adapter",
)


def generate(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(help="The prompt, or - to read one prompt per line from stdin.", show_default=False),
    ] = None,
    prompts_file: options.PromptsFile = None,
    from_image: Annotated[
        str | None,
        typer.Option(
            "--from-image",
            show_default=False,
            help="Re-make a PNG written by janus generate from its metadata (prompt, seed, "
            "sampling, model); options given here win.",
        ),
    ] = None,
    n: Annotated[
        int, typer.Option("-n", "--num-images", min=1, rich_help_panel=SAMPLING, help="Images per prompt.")
    ] = 1,
    cfg: Annotated[
        float,
        typer.Option(
            "--cfg", min=0.0, rich_help_panel=SAMPLING, help="Classifier-free guidance scale (1 = off)."
        ),
    ] = 5.0,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", "-t", min=0.0, rich_help_panel=SAMPLING, help="0 picks the most likely token."
        ),
    ] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            "-s",
            min=0,
            rich_help_panel=SAMPLING,
            help="Image k uses seed+k (random if unset; printed).",
        ),
    ] = None,
    batch_size: options.BatchSize = "auto",
    shard: options.Shard = None,
    output: options.Output = ".",
    overwrite: options.Overwrite = False,
    sidecar: options.Sidecar = False,
    manifest: options.Manifest = None,
    manifest_format: options.Format = options.ManifestFormat.jsonl,
    resume: options.Resume = False,
    keep_going: options.KeepGoing = False,
    as_json: options.Json = False,
    as_jsonl: options.Jsonl = False,
    quiet: options.Quiet = False,
    preview: previews.Preview = None,
    model: options.Model = "janus-pro-1b",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    quantize: options.Quantize = "none",
    compile: options.Compile = False,
    revision: options.Revision = None,
    adapter: options.Adapter = None,
    engine: options.Engine = options.EngineName.local,
    ray_address: options.RayAddress = None,
    workers: options.Workers = 1,
    gpus_per_worker: options.GpusPerWorker = 0.0,
    cpus_per_worker: options.CpusPerWorker = 1,
) -> None:
    """Generate images from a text prompt; prints the path of each PNG written.

    [b]Examples[/b]

      janus generate "a red fox in the snow" -n 4

      janus generate "a lighthouse at dawn" -m janus-pro-7b --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus generate - --json

      janus generate --prompts-file prompts.jsonl -o out/ --jsonl

      janus generate --from-image out/a-red-fox-in-the-snow-002.png

      janus generate -f prompts.txt -o out/ --manifest out/made.jsonl --resume --shard 2/4

      janus generate -f prompts.txt -o out/ --engine ray --workers 8 --gpus-per-worker 1 -q
    """
    with console.handle_errors():
        previews.choose(preview)
        v = dict(
            prompt=prompt,
            seed=seed,
            cfg=cfg,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            model=model,
            revision=revision,
            quantize=quantize,
            adapter=adapter,
        )
        if from_image is not None:
            recipe = recipes.read_recipe(from_image)
            v = recipes.apply_recipe(ctx, recipe, v, RECIPE)
            recipes.check_adapter(from_image, recipe, v["adapter"], given=adapter is not None)
        if v["top_p"] is not None and v["top_p"] <= 0:
            raise console.fail("--top-p must be in (0, 1]")
        from janus_cli.pipelines.text_to_image import GenerateSettings

        sampling = {k: v[k] for k in ("cfg", "temperature", "top_k", "top_p")}
        image_run.run(
            image_run.Request(
                "janus",
                "janus generate",
                jobs.read_prompts(v["prompt"], prompts_file),
                GenerateSettings,
                {"n": n, "seed": v["seed"], **sampling},
                ("n", "seed", *sampling),
                image_run.Output(
                    output,
                    overwrite,
                    inputs.output_mode(as_json, as_jsonl),
                    quiet,
                    manifest,
                    resume,
                    keep_going,
                    sidecar,
                    tables.parquet_copy(manifest, manifest_format is options.ManifestFormat.parquet),
                ),
                v["model"],
                device,
                dtype,
                v["quantize"],
                v["revision"],
                compile,
                None,
                console.batch_size(batch_size),
                inputs.parse_shard(shard),
                engines.ray_options(engine, ray_address, workers, gpus_per_worker, cpus_per_worker, quiet),
                adapter=v["adapter"],
            )
        )
