"""`janus flow-generate`: text to image with JanusFlow (rectified flow + SDXL VAE)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from janus_cli.cli import common, images, inputs, jobs
from janus_cli.cli.common import OUTPUT, RUNTIME, SAMPLING


CHECKS = {"n": jobs.number(int, 1), "seed": jobs.number(int, 0), "cfg": jobs.number(float, 0), "steps": jobs.number(int, 1)}


class Noise(str, Enum):
    per_image = "per-image"
    official = "official"


def flow_generate(
    prompt: Annotated[str | None, typer.Argument(help="The prompt, or - to read one prompt per line from stdin.", show_default=False)] = None,
    prompts_file: common.PromptsFile = None,
    n: Annotated[int, typer.Option("-n", "--num-images", min=1, rich_help_panel=SAMPLING, help="Images per prompt.")] = 1,
    steps: Annotated[int, typer.Option("--steps", min=1, rich_help_panel=SAMPLING, help="Euler steps from noise (t=0) to image (t=1).")] = 30,
    cfg: Annotated[float, typer.Option("--cfg", min=0.0, rich_help_panel=SAMPLING, help="Classifier-free guidance weight on the velocity (1 = off).")] = 2.0,
    seed: Annotated[int | None, typer.Option("--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Random if unset; printed.")] = None,
    noise: Annotated[Noise, typer.Option("--noise", rich_help_panel=SAMPLING,
        help="per-image: image k uses seed+k (same image whatever -n); official: one draw for all images, as the official demo.")] = Noise.per_image,  # fmt: skip
    vae: Annotated[str, typer.Option("--vae", envvar="JANUS_VAE", rich_help_panel=RUNTIME, help="SDXL VAE: a folder, a hub repo id or an alias.")] = "sdxl-vae",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=RUNTIME, help="Images per forward pass (memory bound).")] = 4,
    output: Annotated[str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Folder, or name template with {i} {seed} {slug} {model} {date}.")] = ".",
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Replace existing files.")] = False,
    as_json: common.Json = False,
    as_jsonl: common.Jsonl = False,
    quiet: common.Quiet = False,
    model: common.Model = "janusflow-1.3b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    revision: common.Revision = None,
) -> None:
    """Generate images from a text prompt with JanusFlow; prints the path of each PNG written.

    [b]Examples[/b]

      janus flow-generate "a watercolor lighthouse at dawn" -n 4

      janus flow-generate "a red fox in the snow" --steps 50 --cfg 3 --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus flow-generate - --json

      janus flow-generate --prompts-file prompts.jsonl -o out/ --jsonl
    """
    with common.handle_errors():
        mode = inputs.output_mode(as_json, as_jsonl)
        per_image = noise is Noise.per_image
        work = jobs.make_jobs(jobs.read_prompts(prompt, prompts_file), n, images.pick_seed(seed), {"cfg": cfg, "steps": steps}, CHECKS)
        paths = images.plan_images(work, lambda j, k: j.seed + k if per_image else j.seed, model, output, overwrite)
        session = common.open_model(model, device, dtype, revision, quiet, quantize)
        session.require("janusflow", "janus flow-generate")
        from janus_cli.pipelines.text_to_image_flow import FlowSettings, flow_prompt_ids, generate_flow_images

        for p in {j.prompt for j in work}:
            flow_prompt_ids(session, p)  # fail on an over-long prompt before any work
        decoder = _open_vae(vae, session, quiet)
        base = {"model": model, "revision": revision, "vae": vae, "noise": noise.value,
                "dtype": str(session.dtype).removeprefix("torch."), "generator": f"janus-cli {images.version()}"}  # fmt: skip

        def run(job: jobs.Job):
            settings = FlowSettings(n=job.n, seed=job.seed, noise=noise.value, batch_size=batch_size, **job.options)
            return generate_flow_images(session, decoder, job.prompt, settings, first_index=job.first)

        images.write_images(work, run, paths, base, mode, quiet, overwrite)


def _open_vae(ref: str, session, quiet: bool):
    """Resolve (download if needed) and load the VAE REF in the session's dtype and device."""
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.vae import load_vae

    folder = resolve(ref, progress=common.show_progress(quiet))
    return load_vae(folder, dtype=session.dtype, device=session.device)
