"""`janus serve --ray`: the same server on a Ray cluster, through Ray Serve (server/ray_app.py).

This process is the driver: it joins the cluster as `--engine ray` does (distributed/cluster.py:
one-line errors for an address where nothing listens, a token the cluster refuses, a replica
that fits no node), deploys the application, prints its URL and waits; Ctrl-C (or SIGTERM)
deletes the application, whose replicas first let their running requests finish (up to
ray_app.SHUTDOWN_BOUND_S).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass

from janus_cli.cli import console

MISSING_RAY = "janus serve --ray needs Ray Serve: pip install 'janus-cli[ray,serve]'"
FLAGS = ("--cpus-per-replica", "--gpus-per-replica")


@dataclass(frozen=True)
class RayChoice:
    address: str | None
    replicas: int
    min_replicas: int | None
    max_replicas: int | None
    cpus: float
    gpus: float


def serve_ray(
    refs: list[str], choice: RayChoice, host: str, port: int, options, quiet: bool, **model
) -> None:
    """Deploy REFS on the cluster CHOICE names and serve them until interrupted. MODEL: device,
    dtype, quantize, vae, max_batch, max_queue, adapter, as for the local server."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise console.fail(MISSING_RAY, 1) from None
    from janus_cli.distributed.cluster import RayOptions, join
    from janus_cli.server.ray_app import APP_NAME, RaySpec, build, replica_specs

    scaling = _scaling(choice)
    m = model
    specs = replica_specs(
        refs,
        m["device"],
        m["dtype"],
        m["quantize"],
        m["vae"],
        m["max_batch"],
        m["max_queue"],
        scaling,
        m["adapter"],
    )
    logging.getLogger("ray.serve").setLevel(logging.WARNING if not quiet else logging.ERROR)
    opts = RayOptions(choice.address, 1, choice.gpus, choice.cpus, quiet)
    join(ray, opts, FLAGS)
    host, port = _start_serve(serve, host, port)  # before the try: nothing deployed to delete
    try:
        count = f"{choice.replicas}" if scaling.replicas else f"{scaling.min_replicas}-{scaling.max_replicas}"
        if not quiet:
            names = ", ".join(s.name for s in specs)
            _say(f"deploying {names}: {count} replica(s) each, {choice.cpus:g} CPU(s) per replica")
        try:
            serve.run(
                build(RaySpec(specs, scaling, options)), name=APP_NAME, route_prefix="/", blocking=False
            )
        except RuntimeError as e:
            raise console.fail(f"the application did not deploy: {_first_line(e)}", 1) from None
        shown = f"[{host}]" if ":" in host else host
        _say(f"serving on http://{shown}:{port} (Ctrl-C stops)")
        _wait_for_a_signal()
    finally:
        _stop(ray, serve, APP_NAME, quiet)


def _start_serve(serve, host: str, port: int) -> tuple[str, int]:
    """Start Serve's HTTP proxy on HOST:PORT (0: a free port), or join the one already running
    on the cluster: it keeps the address it started on (Ray would only log that new options are
    ignored), taken when the port was left to us, a one-line error when another was asked.
    Returns where the proxy listens."""
    from ray.serve.context import _get_global_client

    from janus_cli.errors import InputError

    running = _get_global_client(raise_if_no_controller_running=False)
    if running is None:
        port = port or _free_port(host)
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        return host, port
    http = running.http_config
    if http.host == host and port in (0, http.port):
        return host, http.port
    raise InputError(
        f"Serve already runs on this cluster, its proxy on {http.host}:{http.port} (it keeps the address "
        f"it started on): pass --host {http.host} --port {http.port}, or use a fresh cluster"
    )


def _scaling(choice: RayChoice):
    from janus_cli.errors import InputError
    from janus_cli.server.ray_app import Scaling

    if (choice.min_replicas is None) != (choice.max_replicas is None):
        raise InputError("--min-replicas and --max-replicas go together (autoscaling between them)")
    if choice.min_replicas is not None and choice.min_replicas > choice.max_replicas:
        raise InputError(f"--min-replicas {choice.min_replicas} is over --max-replicas {choice.max_replicas}")
    if choice.cpus < 1 and choice.gpus == 0:
        raise InputError("--cpus-per-replica: a replica on the CPU needs at least 1 (its torch thread)")
    autoscale = choice.min_replicas is not None
    return Scaling(
        replicas=None if autoscale else choice.replicas,
        min_replicas=choice.min_replicas or 1,
        max_replicas=choice.max_replicas or 1,
        cpus=choice.cpus,
        gpus=choice.gpus,
    )


def _wait_for_a_signal() -> None:
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _stop(ray, serve, app: str, quiet: bool) -> None:
    """Delete the application (its replicas drain first), then leave the cluster."""
    if not quiet:
        _say("stopping: running requests finish first")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the drain short
    try:
        serve.delete(app)
    except Exception as e:
        _say(f"warning: the application may still run on the cluster ({_first_line(e)})")
    ray.shutdown()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _say(line: str) -> None:
    console.err.print(line, markup=False, soft_wrap=True)
