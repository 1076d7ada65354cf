"""The backend of `janus serve --ray`: each request goes through a Ray Serve deployment handle
to a replica of its model (ray_replica.py), whose events stream back.

The first item of a replica's stream says whether it took the request; it is read before the
app builds a response (as Ray's own OpenAI ingress does), so that a full service is a 429 with
Retry-After and bad input a 400, never a 200 followed by a broken body. A replica that dies
mid-request ends that request with Finished(error=...): the app sends a 500 error object (or an
error event, then [DONE], on a stream) instead of hanging.

Requests of one model are handed to Serve one at a time, each once its replica has taken it
(its first item) or after ROUTE_BOUND_S: Serve's router picks the less busy of two replicas by
the queue lengths it last saw, and requests routed at the same moment all see the same ones (a
burst of 8 images on two idle replicas went 3 + 5, or worse); one at a time, each sees where
the last one went, and a burst splits evenly. The bound keeps a request that waits for a free
replica (or one on a replica that died) from holding up the ones behind it for long.

/metrics sums the scheduler stats each live replica publishes every second into Ray's
key-value store (ray_replica.JanusReplica._publish); a replica silent for STALE_S is gone.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

from janus_cli.pipelines.requests import Finished
from janus_cli.server.backend import ModelInfo, Stream, too_busy
from janus_cli.server.errors import ApiError, bad_request
from janus_cli.server.ray_replica import STATS_NAMESPACE, Accepted, Refused, stats_prefix

STALE_S = 5.0
ROUTE_BOUND_S = 0.25  # a replica with room takes a request at once (Accepted comes before any step)
REPLICA_HEADER = "x-janus-replica"


class RayBackend:
    """HANDLES: served name -> the DeploymentHandle of that model's deployment, in app APP."""

    def __init__(self, handles: dict, app: str):
        self.handles = {name: h.options(stream=True) for name, h in handles.items()}
        self.info_handles = handles
        self.app = app
        self.infos: list[ModelInfo] = []
        self.routing = {name: asyncio.Lock() for name in handles}  # see the module docstring

    async def start(self) -> None:
        """Each model's info, from one of its replicas (waits until one is up)."""
        self.infos = [await h.model_info.remote() for h in self.info_handles.values()]

    async def close(self) -> None:
        pass  # the replicas belong to Serve, which drains and stops them

    async def stats(self) -> dict:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(gather_stats, self.app, [m.name for m in self.infos])

    async def live(self) -> dict[str, int]:
        """Model name -> its live replicas (those that published stats within STALE_S)."""
        return {name: s.replicas for name, s in (await self.stats()).items()}

    async def open(self, model: str, request) -> Stream:
        from ray.serve.exceptions import BackPressureError

        async with self.routing[model]:
            gen = self.handles[model].generate.remote(request)
            taken = asyncio.ensure_future(gen.__anext__())
            try:
                await asyncio.wait([taken], timeout=ROUTE_BOUND_S)
            except asyncio.CancelledError:  # the client went away while waiting
                taken.cancel()
                gen.cancel()
                raise
        try:
            first = await taken
        except BackPressureError:
            raise too_busy("every replica is busy and the queue is full", await self._retry_after()) from None
        except Exception as e:
            raise ApiError(
                503, f"no replica of {model} could take the request ({_line(e)})", code="replica_unavailable"
            ) from None
        if isinstance(first, Refused):
            if first.status == 429:
                raise too_busy(first.message, first.retry_after)
            raise bad_request(first.message, code="invalid_input")
        assert isinstance(first, Accepted), first
        return Stream(_events(gen), gen.cancel, {REPLICA_HEADER: first.replica})

    async def _retry_after(self) -> int:
        """A guess of when a row frees up: one image's time on the busiest model, spread over
        its replicas' rows."""
        guesses = [
            s.busy_seconds / s.images_made / max(1, s.replicas)
            for s in (await self.stats()).values()
            if s.images_made
        ]
        return max(1, math.ceil(max(guesses, default=10.0)))


async def _events(gen):
    """The replica's events; a replica lost mid-way ends the request with an error."""
    from ray.serve.exceptions import RequestCancelledError

    try:
        async for event in gen:
            yield event
    except RequestCancelledError:
        yield Finished(cancelled=True)
    except Exception as e:
        yield Finished(error=f"the replica serving this request stopped ({_line(e)})")


def _line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def gather_stats(app: str, models: list[str]) -> dict:
    """Model name -> the sum of its live replicas' SchedulerStats, with `.replicas` set."""
    from ray.experimental import internal_kv

    from janus_cli.pipelines.scheduler import SchedulerStats

    out = {}
    for name in models:
        total = SchedulerStats()
        total.replicas = 0
        prefix = f"{stats_prefix(app)}{name}/"
        for key in internal_kv._internal_kv_list(prefix, namespace=STATS_NAMESPACE):
            raw = internal_kv._internal_kv_get(key, namespace=STATS_NAMESPACE)
            if raw is None:
                continue
            one = json.loads(raw)
            if time.time() - one.pop("at") > STALE_S:  # a killed replica's last word
                internal_kv._internal_kv_del(key, namespace=STATS_NAMESPACE)
                continue
            for k, v in one.items():
                if k != "rows_last_step":
                    setattr(total, k, getattr(total, k) + v)
            total.rows_last_step = max(total.rows_last_step, one["rows_last_step"])
            total.replicas += 1
        out[name] = total
    return out
