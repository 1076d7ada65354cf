"""`janus generate`: text to image with Janus / Janus-Pro."""

from __future__ import annotations

from typing import Annotated

import typer

from janus_cli.cli import common, engines, image_run, images, inputs, jobs, tables
from janus_cli.cli import preview as previews
from janus_cli.cli.common import SAMPLING

CHECKS = {"n": jobs.number(int, 1), "seed": jobs.number(int, 0), "cfg": jobs.number(float, 0), "temperature": jobs.number(float, 0),
          "top_k": jobs.number(int, 1, optional=True), "top_p": jobs.number(float, 1e-9, 1, optional=True)}  # fmt: skip
RECIPE = ("prompt", "seed", "cfg", "temperature", "top_k", "top_p", "model", "revision", "quantize")


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
    model: common.Model = "janus-pro-1b",
    device: common.Device = "auto",
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    compile: common.Compile = False,
    revision: common.Revision = None,
    engine: common.Engine = common.EngineName.local,
    ray_address: common.RayAddress = None,
    workers: common.Workers = 1,
    gpus_per_worker: common.GpusPerWorker = 0.0,
    cpus_per_worker: common.CpusPerWorker = 1,
) -> None:
    """Generate images from a text prompt; prints the path of each PNG written.

    [b]Examples[/b]

      janus generate "a red fox in the snow" -n 4

      janus generate "a lighthouse at dawn" -m janus-pro-7b --seed 42 -o out/{slug}-{i}.png

      cat prompts.txt | janus generate - --json

      janus generate --prompts-file prompts.jsonl -o out/ --jsonl

      janus generate --from-image out/a-red-fox-in-the-snow-002.png

      janus generate -f prompts.txt -o out/ --manifest out/made.jsonl --resume --shard 2/4

      janus generate -f prompts.txt -o out/ --engine ray --workers 8 --gpus-per-worker 1 --manifest out/made.jsonl
    """
    with common.handle_errors():
        previews.choose(preview)
        v = dict(prompt=prompt, seed=seed, cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p, model=model, revision=revision, quantize=quantize)
        if from_image is not None:
            v = images.apply_recipe(ctx, images.read_recipe(from_image), v, RECIPE)
        requested_batch = common.batch_size(batch_size)
        if v["top_p"] is not None and v["top_p"] <= 0:
            raise common.fail("--top-p must be in (0, 1]")
        ray = engines.ray_options(engine, ray_address, workers, gpus_per_worker, cpus_per_worker, quiet)
        out = image_run.Output(output, overwrite, inputs.output_mode(as_json, as_jsonl), quiet, manifest, resume, keep_going, sidecar,
                               tables.parquet_copy(manifest, manifest_format is common.ManifestFormat.parquet))  # fmt: skip
        log = out.open_manifest()
        options = {k: v[k] for k in ("cfg", "temperature", "top_k", "top_p")}
        lines = jobs.read_prompts(v["prompt"], prompts_file)
        if v["seed"] is None and resume:  # the seed the resumed run picked
            v["seed"] = jobs.recorded_seed(lines, jobs.make_jobs(lines, n, 0, options, CHECKS), log.records())
        work = jobs.make_jobs(lines, n, images.pick_seed(v["seed"]), options, CHECKS)
        work = jobs.shard_jobs(work, inputs.shard_range(sum(j.n for j in work), inputs.parse_shard(shard)))
        seed_of = lambda j, k: j.seed + k  # noqa: E731
        plan = image_run.plan(work, seed_of, v["model"], out, log)
        if not plan.work:
            common.err.print("nothing to do: every image is made" if work else "nothing to do: this shard is empty", markup=False)
            return
        from janus_cli.pipelines.batching import ImageJob
        from janus_cli.pipelines.text_to_image import GenerateSettings, generate_jobs, prompt_ids

        run = engines.open_images(ray, v["model"], device, dtype, v["revision"], v["quantize"], quiet, "janus", "janus generate", compile=compile)
        image_run.check_prompts(plan, lambda p: prompt_ids(run.session, p), keep_going)
        base = {"model": v["model"], "revision": v["revision"], "dtype": run.dtype, "quantize": v["quantize"], "generator": f"janus-cli {images.version()}"}
        image_jobs = [ImageJob(j.prompt, GenerateSettings(n=j.n, seed=j.seed, **j.options), j.first) for j in plan.work]
        size = image_run.batch_size(requested_batch, run, image_jobs, lambda p: len(prompt_ids(run.session, p)), quiet)
        events = run.events(image_jobs, size, lambda: generate_jobs(run.session, image_jobs, size))
        image_run.write_images(plan, events, seed_of, base, out, log)
