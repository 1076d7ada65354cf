"""`janus flow-generate`: text to image with JanusFlow (rectified flow + SDXL VAE)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from janus_cli.cli import console, engines, image_run, inputs, jobs, options, tables
from janus_cli.cli import preview as previews
from janus_cli.cli.options import RUNTIME, SAMPLING


class Noise(str, Enum):
    per_image = "per-image"
    official = "official"


def flow_generate(
    prompt: Annotated[
        str | None,
        typer.Argument(help="The prompt, or - to read one prompt per line from stdin.", show_default=False),
    ] = None,
    prompts_file: options.PromptsFile = None,
    n: Annotated[
        int, typer.Option("-n", "--num-images", min=1, rich_help_panel=SAMPLING, help="Images per prompt.")
    ] = 1,
    steps: Annotated[
        int,
        typer.Option(
            "--steps", min=1, rich_help_panel=SAMPLING, help="Euler steps from noise (t=0) to image (t=1)."
        ),
    ] = 30,
    cfg: Annotated[
        float,
        typer.Option(
            "--cfg",
            min=0.0,
            rich_help_panel=SAMPLING,
            help="Classifier-free guidance weight on the velocity (1 = off).",
        ),
    ] = 2.0,
    seed: Annotated[
        int | None,
        typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Random if unset; printed."),
    ] = None,
    noise: Annotated[
        Noise,
        typer.Option(
            "--noise",
            rich_help_panel=SAMPLING,
            help="per-image: image k uses seed+k (same image whatever -n); official: one draw for "
            "all images, as the official demo.",
        ),
    ] = Noise.per_image,
    vae: Annotated[
        str,
        typer.Option(
            "--vae",
            envvar="JANUS_VAE",
            rich_help_panel=RUNTIME,
            help="SDXL VAE: a folder, a hub repo id or an alias.",
        ),
    ] = "sdxl-vae",
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
    model: options.Model = "janusflow-1.3b",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    quantize: options.Quantize = "none",
    revision: options.Revision = None,
    adapter: options.Adapter = None,
    engine: options.Engine = options.EngineName.local,
    ray_address: options.RayAddress = None,
    workers: options.Workers = 1,
    gpus_per_worker: options.GpusPerWorker = 0.0,
    cpus_per_worker: options.CpusPerWorker = 1,
) -> None:
    """Generate images from a text prompt with JanusFlow; prints the path of each PNG written.

    [b]Examples[/b]

      janus flow-generate "a watercolor lighthouse at dawn" -n 4

      janus flow-generate "a red fox in the snow" --steps 50 --cfg 3 --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus flow-generate - --json

      janus flow-generate --prompts-file prompts.jsonl -o out/ --jsonl
    """
    with console.handle_errors():
        previews.choose(preview)
        if noise is Noise.official and (shard or resume):
            raise console.fail(
                "--noise official draws all of a prompt's images at once: it takes no --shard or --resume"
            )
        from janus_cli.pipelines.text_to_image_flow import FlowSettings

        image_run.run(
            image_run.Request(
                "janusflow",
                "janus flow-generate",
                jobs.read_prompts(prompt, prompts_file),
                FlowSettings,
                {"n": n, "seed": seed, "cfg": cfg, "steps": steps, "noise": noise.value},
                ("n", "seed", "cfg", "steps"),
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
                model,
                device,
                dtype,
                quantize,
                revision,
                False,
                vae,
                console.batch_size(batch_size),
                inputs.parse_shard(shard),
                engines.ray_options(engine, ray_address, workers, gpus_per_worker, cpus_per_worker, quiet),
                adapter=adapter,
            )
        )
