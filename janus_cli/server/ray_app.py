"""The Ray Serve application of `janus serve --ray`, and its import path for Ray's own tools:

    serve run janus_cli.server.ray_app:build_app model=janus-pro-1b replicas=2
    serve deploy examples/serve-ray.yaml

One deployment per model (ray_replica.JanusReplica: the model and one Scheduler per replica)
behind one ingress, `JanusGateway`, whose ASGI app is the same app as the local server's
(app.create_app) over a RayBackend. The ingress claims no CPU: on a small cluster every CPU is
the replicas' (with one, a second replica would never be placed).

Sizing: a replica takes `max_ongoing_requests` = 2 x max_batch requests (a batch of images and
one of answers run side by side); more wait at the ingress's handle, up to `max_queue`, in
front of whichever replica frees first; past that the ingress answers 429.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from janus_cli.server.ray_replica import JanusReplica, ReplicaSpec, ongoing

APP_NAME = "janus"
SHUTDOWN_BOUND_S = 120  # a replica being stopped lets running images finish this long
HEALTH_PERIOD_S = 2  # how soon a dead scheduler (or replica) is noticed and replaced
DEFAULT_MAX_BATCH = 8  # the Ray path sizes its deployments before any replica has loaded


@dataclass(frozen=True)
class Scaling:
    replicas: int | None = 1  # fixed count; None: autoscale between min and max
    min_replicas: int = 1
    max_replicas: int = 1
    cpus: float = 1.0  # per replica (also its torch threads)
    gpus: float = 0.0


@dataclass(frozen=True)
class RaySpec:
    """Everything the application is built from (the CLI's options or `serve run` args)."""

    replicas: list[ReplicaSpec]
    scaling: Scaling = field(default_factory=Scaling)
    options: object = None  # app.Options (security policy, output dir)


def build(spec: RaySpec):
    """The bound Serve application of SPEC."""
    from ray import serve

    from janus_cli.server.app import Options

    deployment = serve.deployment(JanusReplica)
    models = {}
    for r in spec.replicas:
        models[r.name] = deployment.options(
            name=_deployment_name(r.name),
            ray_actor_options={"num_cpus": spec.scaling.cpus, "num_gpus": spec.scaling.gpus},
            max_ongoing_requests=ongoing(r.max_batch),
            max_queued_requests=r.max_queue,
            graceful_shutdown_timeout_s=SHUTDOWN_BOUND_S,
            health_check_period_s=HEALTH_PERIOD_S,
            **_replica_count(spec.scaling, r.max_batch),
        ).bind(r)
    gateway = serve.deployment(
        serve.ingress()(JanusGateway),
        name="ingress",
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=100_000,  # the replicas' handles queue and refuse, not the ingress
        graceful_shutdown_timeout_s=SHUTDOWN_BOUND_S,
    )
    return gateway.bind(models, spec.options or Options())


class JanusGateway:
    """The ingress: app.create_app over a RayBackend of the models' handles."""

    def __init__(self, models: dict, options):
        from ray import serve

        from janus_cli.server.app import create_app
        from janus_cli.server.ray_backend import RayBackend

        app = serve.get_replica_context().app_name
        self._app = create_app(RayBackend(models, app), options)

    def __serve_build_asgi_app__(self):
        return self._app


def build_app(args: dict):
    """`serve run` / `serve deploy`'s builder: ARGS are `janus serve`'s options, spelled with
    underscores (model, max_batch, max_queue, replicas, min_replicas, max_replicas,
    cpus_per_replica, gpus_per_replica, device, dtype, quantize, vae, adapter, api_key, allowed_host,
    allow_origin, max_body_mb, output_dir, host). A list may be a YAML list or comma-separated;
    api_key defaults to JANUS_API_KEY."""
    from janus_cli.server.app import Options
    from janus_cli.server.security import Policy

    known = set(BUILD_ARGS)
    unknown = set(args) - known
    if unknown:
        raise ValueError(f"unknown janus args {sorted(unknown)}; known: {', '.join(sorted(known))}")
    a = {**BUILD_ARGS, **args}
    policy = Policy(
        a["api_key"] or os.environ.get("JANUS_API_KEY") or None,
        a["host"],
        frozenset(_list(a["allowed_host"])),
        frozenset(_list(a["allow_origin"])),
        int(float(a["max_body_mb"]) * 2**20),
    )
    replicas = None if a["min_replicas"] is not None or a["max_replicas"] is not None else a["replicas"]
    scaling = Scaling(
        replicas=None if replicas is None else int(replicas),
        min_replicas=int(a["min_replicas"] or 1),
        max_replicas=int(a["max_replicas"] or a["min_replicas"] or 1),
        cpus=float(a["cpus_per_replica"]),
        gpus=float(a["gpus_per_replica"]),
    )
    specs = replica_specs(
        _list(a["model"]),
        a["device"],
        a["dtype"],
        a["quantize"],
        a["vae"],
        a["max_batch"],
        a["max_queue"],
        scaling,
        a["adapter"],
    )
    return build(RaySpec(specs, scaling, Options(policy, Path(a["output_dir"]).resolve())))


BUILD_ARGS = {
    "model": "janus-pro-1b",
    "max_batch": DEFAULT_MAX_BATCH,
    "max_queue": 64,
    "replicas": 1,
    "min_replicas": None,
    "max_replicas": None,
    "cpus_per_replica": 1,
    "gpus_per_replica": 0,
    "device": "auto",
    "dtype": "auto",
    "quantize": "none",
    "vae": None,
    "adapter": None,
    "api_key": None,
    "allowed_host": [],
    "allow_origin": [],
    "max_body_mb": 20,
    "output_dir": "janus-serve-images",
    "host": "127.0.0.1",
}


def replica_specs(
    refs: list[str],
    device: str,
    dtype: str,
    quantize: str,
    vae: str | None,
    max_batch,
    max_queue,
    scaling: Scaling,
    adapter: str | None = None,
) -> list[ReplicaSpec]:
    """One ReplicaSpec per model ref, under its served name (loading.served_name)."""
    from janus_cli.server.loading import DEFAULT_VAE, served_names

    names = served_names(refs, adapter)
    if adapter is not None:
        adapter = str(Path(adapter).expanduser().resolve())  # the replicas' working folder is not ours
    return [
        ReplicaSpec(
            ref,
            name,
            device,
            dtype,
            quantize,
            vae or DEFAULT_VAE,
            int(max_batch or DEFAULT_MAX_BATCH),
            int(max_queue),
            max(1, int(scaling.cpus)),
            adapter,
        )
        for ref, name in zip(refs, names, strict=True)
    ]


def _replica_count(s: Scaling, max_batch: int) -> dict:
    """Serve's replica options: a fixed count, or autoscaling on a batch's worth per replica."""
    if s.replicas is not None:
        return {"num_replicas": s.replicas}
    return {
        "autoscaling_config": {
            "min_replicas": s.min_replicas,
            "max_replicas": s.max_replicas,
            "target_ongoing_requests": max_batch,
        }
    }


def _deployment_name(served: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9_-]", "_", served)


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
