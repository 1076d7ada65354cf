"""`janus describe`: answer a question about images (all four models)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import console, engines, inputs, options, tables, terminal
from janus_cli.cli.manifest import Manifest
from janus_cli.cli.options import OUTPUT, RUNTIME, SAMPLING


def describe(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (their images, sorted), globs, tables (.parquet or .jsonl "
            "with an image column), or - for image bytes on stdin."
        ),
    ],
    prompt: Annotated[
        str,
        typer.Option(
            "--prompt", "-p", help="The question. Use <image_placeholder> to place images yourself."
        ),
    ] = "Describe this image in detail.",
    together: Annotated[
        bool,
        typer.Option("--together", help="One conversation about all the images, instead of one per image."),
    ] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, rich_help_panel=SAMPLING)] = 512,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            "-t",
            min=0.0,
            rich_help_panel=SAMPLING,
            help="0 (default) is greedy, like the official inference.",
        ),
    ] = 0.0,
    top_p: Annotated[
        float | None, typer.Option("--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING)
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", "-s", min=0, rich_help_panel=SAMPLING, help="Image i of the list answers with seed+i."
        ),
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=RUNTIME)] = 4,
    shard: options.Shard = None,
    keep_going: options.KeepGoing = False,
    manifest: options.Manifest = None,
    resume: options.Resume = False,
    manifest_format: options.Format = options.ManifestFormat.jsonl,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", rich_help_panel=OUTPUT, help="One JSON object per image (per line) on stdout."
        ),
    ] = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", rich_help_panel=OUTPUT, help="The same as --json.")
    ] = False,
    quiet: options.Quiet = False,
    model: options.Model = "janus-pro-1b",
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
    """Describe images, or answer a question about them; the answer streams to stdout.

    [b]Examples[/b]

      janus describe photo.jpg

      janus describe a.png b.png -p "What changed between these two?" --together

      janus describe photos/ --jsonl -m janus-pro-7b > captions.jsonl

      janus describe 'photos/*.jpg' --manifest captions.jsonl --resume --keep-going -q

      janus describe photos/ --engine ray --workers 4 --gpus-per-worker 1 --manifest captions.jsonl

      curl -s https://example.com/cat.jpg | janus describe -
    """
    import time

    with console.handle_errors():
        if top_p is not None and top_p <= 0:
            raise console.fail("--top-p must be in (0, 1]")
        as_lines = inputs.output_mode(as_json, as_jsonl) != "text"
        if together and (shard or keep_going or manifest or resume):
            raise console.fail(
                "--together is one conversation: it takes no --shard, --keep-going, --manifest or --resume"
            )
        on_ray = engine is options.EngineName.ray
        if on_ray:
            if together:
                raise console.fail("--together is one conversation: it runs with --engine local")
            from janus_cli.distributed.cluster import import_ray

            import_ray()  # without the extra, say so before any work
        if resume and manifest is None:
            raise console.fail("--resume needs --manifest FILE")
        log = Manifest(manifest) if manifest else None
        parquet = tables.parquet_copy(manifest, manifest_format is options.ManifestFormat.parquet)
        from janus_cli.pipelines import describing

        names = inputs.expand_images(images)
        done = describing.finished(log.records()) if resume else set()
        items = describing.pick_items(
            names, inputs.shard_range(len(names), inputs.parse_shard(shard)), done, prompt
        )
        if on_ray and inputs.STDIN in names:
            raise console.fail("--engine ray reads image files: `-` (stdin) runs with --engine local")
        stdin = inputs.read_stdin_bytes([name for _, name in items])
        if not keep_going:
            for _, name in items:
                if name != inputs.STDIN:
                    inputs.probe_image(name)  # fail on a missing or non-image file before loading the model
        if not items:
            console.err.print(
                "nothing to do: every image is done" if done else "nothing to do: this shard is empty",
                markup=False,
            )
            return
        from janus_cli.pipelines.image_to_text import DescribeSettings

        settings = DescribeSettings(
            question=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
        )
        base = {
            "model": model,
            "prompt": prompt,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        if adapter is not None:  # checked before any loading; every record names it
            from janus_cli.checkpoints.adapter import read_adapter

            adapter = engines.adapter_path(adapter)
            base.update(read_adapter(adapter).ref(adapter).recipe())
        stream = not as_lines and not on_ray and (together or len(items) == 1)
        failures: list[str] = []

        def emit(record: dict) -> None:
            if log is not None:
                log.append(record)
            if as_lines:
                terminal.result(json.dumps(record, ensure_ascii=False))

        def on_text(name: str, text: str, tokens: int) -> None:
            emit({"image": name, "text": text, **base, "tokens": tokens})
            if not as_lines:
                terminal.result("" if stream else f"==> {name} <==\n{text}\n")

        def on_error(name: str, message: str) -> None:
            failures.append(name)
            emit({"image": name, "error": message, **base})
            console.err.print(f"error: {message}", markup=False)

        on_delta = (lambda text: typer.echo(text, nl=False)) if stream else (lambda text: None)
        try:
            if on_ray:
                from janus_cli.distributed.cluster import ModelRef, RayOptions
                from janus_cli.distributed.describe_job import describe_on_ray

                t0 = time.perf_counter()
                opts = RayOptions(ray_address, workers, gpus_per_worker, cpus_per_worker, quiet)
                tokens = describe_on_ray(
                    opts,
                    ModelRef(
                        model, device, dtype, revision, quantize, parts=console.UNDERSTANDING, adapter=adapter
                    ),
                    items,
                    settings,
                    keep_going,
                    on_text,
                    on_error,
                )
            else:
                session = console.open_model(
                    model,
                    device,
                    dtype,
                    revision,
                    quiet,
                    quantize,
                    parts=console.UNDERSTANDING,
                    adapter=adapter,
                ).session
                t0 = time.perf_counter()

                def load(name: str):
                    return inputs.load(name, stdin)

                if together:
                    pictures = [load(name) for _, name in items]
                    tokens = describing.answer(
                        session,
                        [pictures],
                        [", ".join(name for _, name in items)],
                        settings,
                        on_delta,
                        on_text,
                    )
                else:
                    with terminal.progress(quiet or stream) as bar:
                        on_text, on_error = terminal.counted(bar, "describing", len(items), on_text, on_error)
                        tokens = describing.describe_items(
                            session, items, load, settings, keep_going, on_delta, on_text, on_error
                        )
        finally:  # what finished, also when a failure or an interrupt ends the run
            if parquet is not None:
                tables.write_parquet(log.records(), parquet)
        seconds = time.perf_counter() - t0
        if not quiet:
            console.err.print(
                f"{terminal.plural(tokens, 'token')} in {seconds:.1f}s ({tokens / seconds:.1f} "
                f"tokens/s), {console.peak_memory()}",
                markup=False,
            )
        if failures:
            raise console.fail(f"{len(failures)} of {len(items)} images failed", 1)
