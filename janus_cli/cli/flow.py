"""`janus flow-generate`: text to image with JanusFlow (rectified flow + SDXL VAE)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from janus_cli.cli import common, engines, image_run, images, inputs, jobs, tables
from janus_cli.cli import preview as previews
from janus_cli.cli.common import RUNTIME, SAMPLING


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
    batch_size: common.BatchSize = "auto",
    shard: common.Shard = None,
    output: common.Output = ".",
    overwrite: common.Overwrite = False,
    sidecar: common.Sidecar = False,
    manifest: common.Manifest = None,
    manifest_format: common.Format = common.ManifestFormat.jsonl,
    resume: common.Resume = False,
    keep_going: common.KeepGoing = False,
    as_json: common.Json = False,
    as_jsonl: common.Jsonl = False,
    quiet: common.Quiet = False,
    preview: previews.Preview = None,
    model: common.Model = "janusflow-1.3b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    revision: common.Revision = None,
    engine: common.Engine = common.EngineName.local,
    ray_address: common.RayAddress = None,
    workers: common.Workers = 1,
    gpus_per_worker: common.GpusPerWorker = 0.0,
    cpus_per_worker: common.CpusPerWorker = 1,
) -> None:
    """Generate images from a text prompt with JanusFlow; prints the path of each PNG written.

    [b]Examples[/b]

      janus flow-generate "a watercolor lighthouse at dawn" -n 4

      janus flow-generate "a red fox in the snow" --steps 50 --cfg 3 --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus flow-generate - --json

      janus flow-generate --prompts-file prompts.jsonl -o out/ --jsonl
    """
    with common.handle_errors():
        previews.choose(preview)
        requested_batch = common.batch_size(batch_size)
        per_image = noise is Noise.per_image
        if not per_image and (shard or resume):
            raise common.fail("--noise official draws all of a prompt's images at once: it takes no --shard or --resume")
        ray = engines.ray_options(engine, ray_address, workers, gpus_per_worker, cpus_per_worker, quiet)
        out = image_run.Output(output, overwrite, inputs.output_mode(as_json, as_jsonl), quiet, manifest, resume, keep_going, sidecar,
                               tables.parquet_copy(manifest, manifest_format is common.ManifestFormat.parquet))  # fmt: skip
        log = out.open_manifest()
        options = {"cfg": cfg, "steps": steps}
        lines = jobs.read_prompts(prompt, prompts_file)
        if seed is None and resume:  # the seed the resumed run picked
            seed = jobs.recorded_seed(lines, jobs.make_jobs(lines, n, 0, options, CHECKS), log.records())
        work = jobs.make_jobs(lines, n, images.pick_seed(seed), options, CHECKS)
        work = jobs.shard_jobs(work, inputs.shard_range(sum(j.n for j in work), inputs.parse_shard(shard)))
        seed_of = (lambda j, k: j.seed + k) if per_image else (lambda j, k: j.seed)
        plan = image_run.plan(work, seed_of, model, out, log)
        if not plan.work:
            common.err.print("nothing to do: every image is made" if work else "nothing to do: this shard is empty", markup=False)
            return
        from janus_cli.pipelines.batching import ImageJob
        from janus_cli.pipelines.text_to_image_flow import FlowSettings, flow_prompt_ids, generate_flow_jobs

        run = engines.open_images(ray, model, device, dtype, revision, quantize, quiet, "janusflow", "janus flow-generate", vae)
        image_run.check_prompts(plan, lambda p: flow_prompt_ids(run.session, p), keep_going)
        base = {"model": model, "revision": revision, "vae": vae, "noise": noise.value, "dtype": run.dtype, "quantize": quantize,
                "generator": f"janus-cli {images.version()}"}  # fmt: skip
        flow_jobs = [ImageJob(j.prompt, FlowSettings(n=j.n, seed=j.seed, noise=noise.value, **j.options), j.first) for j in plan.work]

        size = image_run.batch_size(requested_batch, run, flow_jobs, lambda p: len(flow_prompt_ids(run.session, p)[0]), quiet)

        def local():
            return generate_flow_jobs(run.session, open_vae(vae, run.session, quiet), flow_jobs, size)

        image_run.write_images(plan, run.events(flow_jobs, size, local), seed_of, base, out, log)


def open_vae(ref: str, session, quiet: bool):
    """Resolve (download if needed) and load the VAE REF in the session's dtype and device."""
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.vae import load_vae

    folder = resolve(ref, progress=common.show_progress(quiet))
    return load_vae(folder, dtype=session.dtype, device=session.device)
