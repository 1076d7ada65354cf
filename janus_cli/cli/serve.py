"""`janus serve`: an OpenAI-compatible HTTP server (janus_cli/server) over the loaded models."""

from __future__ import annotations

from typing import Annotated

import typer

from janus_cli.cli import console, options
from janus_cli.cli.options import RUNTIME

SERVER = "Server"
SECURITY = "Security"
RAY = "Ray Serve (--ray)"
MISSING = "janus serve needs starlette, uvicorn and prometheus-client: pip install 'janus-cli[serve]'"


def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            envvar="JANUS_MODEL",
            rich_help_panel=RUNTIME,
            show_default=False,
            help="A checkpoint to serve (folder, hub repo id or alias); repeat to serve several. "
            "Default: janus-pro-1b.",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            rich_help_panel=SERVER,
            help="Address to bind; 0.0.0.0 exposes the server to the network.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, rich_help_panel=SERVER, help="Port (0: a free one, printed)."
        ),
    ] = 8000,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch",
            min=1,
            rich_help_panel=SERVER,
            show_default=False,
            help="Images (and answers) per shared step. "
            "Default: what --batch-size auto picks from the free memory.",
        ),
    ] = None,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue", min=1, rich_help_panel=SERVER, help="Requests waiting per model before 429s."
        ),
    ] = 64,
    output_dir: Annotated[
        str,
        typer.Option(
            "--output-dir",
            rich_help_panel=SERVER,
            help='Where images asked with response_format "url" are written (and served from /files/).',
        ),
    ] = "janus-serve-images",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="JANUS_API_KEY",
            rich_help_panel=SECURITY,
            show_default=False,
            help="Require Authorization: Bearer KEY on the API (not on /health).",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            rich_help_panel=SECURITY,
            show_default=False,
            help="Host-header names to accept besides localhost, IP addresses and --host "
            "(DNS-rebinding guard); * for any.",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            rich_help_panel=SECURITY,
            show_default=False,
            help="An exact origin (https://app.example) whose web pages may call the API (CORS). "
            "None by default.",
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option("--max-body-mb", min=0.001, rich_help_panel=SECURITY, help="Largest request body."),
    ] = 20.0,
    vae: Annotated[
        str | None,
        typer.Option(
            "--vae",
            envvar="JANUS_VAE",
            rich_help_panel=RUNTIME,
            show_default=False,
            help="SDXL VAE for JanusFlow models: a folder, a hub repo id or an alias. Default: sdxl-vae.",
        ),
    ] = None,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    quantize: options.Quantize = "none",
    adapter: options.Adapter = None,
    no_access_log: Annotated[
        bool,
        typer.Option(
            "--no-access-log",
            rich_help_panel=options.OUTPUT,
            help="No line per request on stderr (method, path, status, seconds); -q implies it.",
        ),
    ] = False,
    quiet: options.Quiet = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            rich_help_panel=RAY,
            help="Serve on a Ray cluster with Ray Serve: one deployment per model, each replica "
            "its own copy of the model and scheduler, behind the same routes.",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            rich_help_panel=RAY,
            show_default=False,
            help="Ray cluster to join: auto or HOST:PORT. Default: RAY_ADDRESS if set, else a local "
            "cluster started for this server.",
        ),
    ] = None,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, rich_help_panel=RAY, help="Replicas per model.")
    ] = 1,
    min_replicas: Annotated[
        int | None,
        typer.Option(
            "--min-replicas",
            min=1,
            rich_help_panel=RAY,
            show_default=False,
            help="Autoscale: at least this many replicas per model (with --max-replicas).",
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(
            "--max-replicas",
            min=1,
            rich_help_panel=RAY,
            show_default=False,
            help="Autoscale: at most this many replicas per model.",
        ),
    ] = None,
    cpus_per_replica: Annotated[
        float,
        typer.Option(
            "--cpus-per-replica",
            min=0.0,
            rich_help_panel=RAY,
            help="CPUs each replica reserves (its torch threads: at least 1).",
        ),
    ] = 1.0,
    gpus_per_replica: Annotated[
        float,
        typer.Option(
            "--gpus-per-replica",
            min=0.0,
            rich_help_panel=RAY,
            help="GPUs each replica reserves (fractions share a GPU).",
        ),
    ] = 0.0,
) -> None:
    """Serve the models over an OpenAI-compatible HTTP API: chat about images, generate images.

    Concurrent requests share the model's steps (continuous batching). The routes are
    /v1/chat/completions, /v1/images/generations, /v1/models, /health and /metrics.

    [b]Examples[/b]

      janus serve -m janus-pro-1b

      janus serve -m janus-pro-1b -m janusflow-1.3b --port 9000

      janus serve -m janus-pro-1b --adapter ./style   (served as janus-pro-1b+style)

      JANUS_API_KEY=secret janus serve --host 0.0.0.0 --allowed-host gpu-box.lan

      janus serve --ray --address HEAD:6379 --replicas 2 --cpus-per-replica 4
    """
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise console.fail(MISSING, 1) from None
    with console.handle_errors():
        from janus_cli.errors import InputError

        refs = model or ["janus-pro-1b"]
        if host in ("0.0.0.0", "::") and not api_key:
            console.err.print(
                f"warning: --host {host} without --api-key: anyone who can reach this machine "
                "can use the models",
                markup=False,
            )
        from pathlib import Path

        from janus_cli.server.app import Options
        from janus_cli.server.loading import DEFAULT_VAE, served_names
        from janus_cli.server.security import Policy

        names = served_names(refs, adapter)
        policy = Policy(
            api_key,
            host,
            frozenset(allowed_host or ()),
            frozenset(allow_origin or ()),
            int(max_body_mb * 2**20),
        )
        given = {
            "--address": address is not None,
            "--replicas": replicas != 1,
            "--min-replicas": min_replicas is not None,
            "--max-replicas": max_replicas is not None,
            "--cpus-per-replica": cpus_per_replica != 1.0,
            "--gpus-per-replica": gpus_per_replica != 0.0,
        }
        if not ray and any(given.values()):
            raise InputError(f"{next(k for k, v in given.items() if v)} serves on Ray: add --ray")
        options = Options(policy, Path(output_dir).resolve(), access_log=not (quiet or no_access_log))
        if ray:
            from janus_cli.cli.serve_ray import RayChoice, serve_ray

            choice = RayChoice(
                address, replicas, min_replicas, max_replicas, cpus_per_replica, gpus_per_replica
            )
            return serve_ray(
                refs,
                choice,
                host,
                port,
                options,
                quiet,
                device=device,
                dtype=dtype,
                quantize=quantize,
                vae=vae,
                max_batch=max_batch,
                max_queue=max_queue,
                adapter=adapter,
            )
        served = [
            _open(
                ref,
                name,
                device,
                dtype,
                quantize,
                vae or DEFAULT_VAE,
                max_batch,
                max_queue,
                len(refs),
                quiet,
                adapter,
            )
            for ref, name in zip(refs, names, strict=True)
        ]
        _listen(served, host, port, options)


def _open(
    ref: str,
    name: str,
    device: str,
    dtype: str,
    quantize: str,
    vae: str,
    max_batch: int | None,
    max_queue: int,
    models: int,
    quiet: bool,
    adapter: str | None = None,
):
    """Load REF and give it its scheduler: a server.backend.Model."""
    import time

    from janus_cli.pipelines.scheduler import Scheduler
    from janus_cli.server.backend import Model
    from janus_cli.server.batch import default_max_batch
    from janus_cli.server.loading import load

    t0 = time.perf_counter()
    janus = load(ref, device, dtype, quantize, vae, adapter)
    s = janus.session
    size = max_batch or default_max_batch(s, models)
    if not quiet:
        took = time.perf_counter() - t0
        console.err.print(
            f"loaded {name} ({str(s.dtype).removeprefix('torch.')}, {s.device.type}) in {took:.1f}s; "
            f"up to {size} images per step, {max_queue} requests queued",
            markup=False,
        )
    scheduler = Scheduler(s, vae=janus.vae, max_batch=size, max_queue=max_queue)
    return Model(name, janus, scheduler, size, vae)


BACKLOG = 2048  # connections the kernel queues until the server accepts them (uvicorn's default)


def _listen(served: list, host: str, port: int, options) -> None:
    """Serve until interrupted (uvicorn handles Ctrl-C), on a socket bound here so that port 0
    can be printed as the port it got."""
    import socket

    import uvicorn

    from janus_cli.server.app import create_app

    app = create_app(served, options)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # before the line below: a client that reads it may connect at once
    except OSError as e:
        raise console.fail(f"cannot listen on {host}:{port}: {e.strerror}", 1) from None
    shown = f"[{host}]" if ":" in host else host
    console.err.print(f"serving on http://{shown}:{sock.getsockname()[1]} (Ctrl-C stops)", markup=False)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
        backlog=BACKLOG,
    )
    uvicorn.Server(config).run(sockets=[sock])
