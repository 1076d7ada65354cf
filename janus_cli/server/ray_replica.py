"""One Ray Serve replica of a served model: the model loaded through `janus_cli.load`, one
continuous-batching Scheduler (pipelines/scheduler.py), and a streaming `generate` that the
ingress (ray_backend.py) calls through a deployment handle.

`generate` answers first, at once, whether the request was taken (`Accepted`, naming this
replica) or refused (`Refused`: bad input or a full queue), so that the ingress can peek at
that first item and send a 400 or 429 before any 200. Then come the scheduler's events, ending
with Finished. A client that goes away makes Serve cancel this generator; its `finally` cancels
the ticket, and the rows leave the batch at the next step.

This module imports Ray only inside functions: it is a plain class that ray_app.py wraps with
`serve.deployment`, and that tests can also build in process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)
STATS_NAMESPACE = "janus-serve"
PUBLISH_EVERY_S = 1.0  # how often a replica's scheduler stats reach /metrics


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica loads and how it batches (plain data: it travels in Serve's config)."""

    ref: str  # the checkpoint: folder, hub repo id or alias
    name: str  # served under
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    vae: str | None = None
    max_batch: int = 8
    max_queue: int = 64  # requests waiting in the ingress for a free replica (not in a replica)
    threads: int = 1  # torch's CPU threads (the replica's CPUs)
    adapter: str | None = None  # a LoRA adapter folder every node can read, merged at load


@dataclass(frozen=True)
class Accepted:
    replica: str  # which replica runs the request


@dataclass(frozen=True)
class Refused:
    status: int  # 400 or 429
    message: str
    retry_after: int = 0


class JanusReplica:
    """The body of a model's deployment (see the module docstring)."""

    def __init__(self, spec: ReplicaSpec):
        import torch

        from janus_cli.pipelines.scheduler import Scheduler
        from janus_cli.server.backend import ModelInfo, base_record
        from janus_cli.server.loading import load

        torch.set_num_threads(max(1, spec.threads))  # fp32 results depend on the split: fixed
        janus = load(spec.ref, spec.device, spec.dtype, spec.quantize, spec.vae, spec.adapter)
        # Serve sends at most ongoing(max_batch) requests: the scheduler queues them all
        self.scheduler = Scheduler(janus.session, janus.vae, spec.max_batch, ongoing(spec.max_batch))
        self.scheduler.start()
        self.info = ModelInfo(spec.name, janus.family, spec.max_batch, base_record(janus, spec.vae))
        self.replica, self.key = _whoami(spec.name)
        self._closed = threading.Event()
        if self.key is not None:
            threading.Thread(target=self._publish, name="janus-stats", daemon=True).start()

    def model_info(self):
        return self.info

    async def generate(self, request):
        """Accepted or Refused, then (if accepted) the request's events up to Finished."""
        from janus_cli.errors import JanusError
        from janus_cli.pipelines.scheduler import QueueFull
        from janus_cli.server.sse import Events

        events = Events()
        try:
            ticket = self.scheduler.submit(request, events)
        except QueueFull as e:
            yield Refused(429, str(e), e.retry_after)
            return
        except JanusError as e:
            yield Refused(400, str(e))
            return
        try:
            yield Accepted(self.replica)
            async for event in events:
                yield event
        finally:  # finished, failed, or cancelled by Serve when the client left
            ticket.cancel()

    def check_health(self) -> None:
        """Serve calls this periodically: a replica whose scheduler thread died is restarted."""
        if not self.scheduler.alive():
            raise RuntimeError(f"{self.info.name}: the scheduler thread is not running")

    def __del__(self) -> None:
        """Serve calls this after the replica drained its requests (graceful_shutdown_timeout_s
        bounds the wait): what is still running ends with Finished(error=...)."""
        closed = getattr(self, "_closed", None)
        if closed is None or closed.is_set():
            return
        closed.set()
        self.scheduler.close()
        _forget(self.key)

    def _publish(self) -> None:
        """This replica's scheduler stats into Ray's key-value store for the ingress's /metrics
        (ray_backend.gather_stats), stamped so that a killed replica's go stale."""
        from ray.experimental import internal_kv

        while self.scheduler.alive():  # a dead scheduler goes silent: /health counts it out
            stats = {"at": time.time(), **asdict(self.scheduler.stats())}
            try:
                internal_kv._internal_kv_put(
                    self.key, json.dumps(stats), overwrite=True, namespace=STATS_NAMESPACE
                )
            except Exception:  # the GCS away for a moment: the next period tries again
                log.warning("could not publish scheduler stats", exc_info=True)
            if self._closed.wait(PUBLISH_EVERY_S):
                return


def ongoing(max_batch: int) -> int:
    """Requests a replica takes at once: a batch of images and one of answers, side by side."""
    return 2 * max_batch


def stats_prefix(app: str) -> str:
    return f"{app}/"


def _whoami(name: str) -> tuple[str, str | None]:
    """This replica's id and its stats key; outside Serve (tests in process): local, None."""
    try:
        from ray import serve

        context = serve.get_replica_context()
    except Exception:
        return "local", None
    replica = context.replica_id.unique_id
    return replica, f"{stats_prefix(context.app_name)}{name}/{replica}"


def _forget(key: str | None) -> None:
    if key is None:
        return
    try:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(key, namespace=STATS_NAMESPACE)
    except Exception:
        pass
