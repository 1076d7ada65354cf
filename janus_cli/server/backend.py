"""What the HTTP app serves from: a backend takes a request for a model and gives its events.

The app (app.py) owns the routes, validation, SSE framing, metrics and security once; a backend
owns where the model runs. `LocalBackend` runs one Scheduler per model in this process;
`RayBackend` (ray_backend.py) sends each request to a Ray Serve replica that owns one. Both
refuse a request before its first event (a 400 for bad input, a 429 with Retry-After when
full) by raising ApiError from `open`, so that no 200 is ever sent for a request that failed to
start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from janus_cli.server.errors import ApiError, bad_request


@dataclass(frozen=True)
class ModelInfo:
    """What the app knows of a served model without holding it."""

    name: str
    family: str  # "janus" or "janusflow"
    max_batch: int  # images (and answers) per shared step of one scheduler
    base: dict  # the recipe fields of every image it makes (pipelines.images.run_base)


@dataclass
class Stream:
    """One request's events (ending with Finished), `cancel` (idempotent, from any thread),
    and response HEADERS the backend adds (e.g. which replica serves it)."""

    events: AsyncIterator
    cancel: Callable[[], None]
    headers: dict[str, str] = field(default_factory=dict)

    def __aiter__(self):
        return self.events.__aiter__()


@dataclass
class Model:
    """A model served in this process: the loaded `Janus` and its scheduler."""

    name: str
    janus: object  # janus_cli.Janus
    scheduler: object  # pipelines.scheduler.Scheduler
    max_batch: int
    vae: str | None = None  # JanusFlow's VAE reference, for the recipe

    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.janus.family, self.max_batch, base_record(self.janus, self.vae))


def base_record(janus, vae: str | None) -> dict:
    """The recipe fields of every image JANUS makes, as `janus generate` records them."""
    from janus_cli.pipelines.images import run_base

    s = janus.session
    extra = {"vae": vae} if janus.family == "janusflow" else {}
    return run_base(s.name, None, str(s.dtype).removeprefix("torch."), s.quantize, adapter=s.adapter, **extra)


def submit(scheduler, request, on_event) -> object:
    """REQUEST queued on SCHEDULER: bad input is a 400, a full queue a 429 with Retry-After.
    Returns the Ticket."""
    from janus_cli.errors import JanusError
    from janus_cli.pipelines.scheduler import QueueFull

    try:
        return scheduler.submit(request, on_event)
    except QueueFull as e:
        raise too_busy(str(e), e.retry_after) from None
    except JanusError as e:
        raise bad_request(str(e), code="invalid_input") from None


def too_busy(message: str, retry_after: int) -> ApiError:
    return ApiError(
        429,
        f"{message}; retry in {retry_after} s",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(int(retry_after))},
    )


class LocalBackend:
    """MODELS served by their schedulers in this process (started and closed with the app)."""

    def __init__(self, models: list[Model]):
        self.served = {m.name: m for m in models}
        self.infos = [m.info() for m in models]  # known before start: the app reads them

    async def start(self) -> None:
        for m in self.served.values():
            m.scheduler.start()

    async def close(self) -> None:
        from starlette.concurrency import run_in_threadpool

        for m in self.served.values():
            await run_in_threadpool(m.scheduler.close)

    async def stats(self) -> dict:
        """Model name -> its scheduler's SchedulerStats, for /metrics."""
        return {name: m.scheduler.stats() for name, m in self.served.items()}

    async def live(self) -> dict[str, int]:
        """Model name -> 1 while its scheduler's thread runs, else 0 (/health says 503)."""
        return {name: int(m.scheduler.alive()) for name, m in self.served.items()}

    async def open(self, model: str, request) -> Stream:
        from janus_cli.server.sse import Events

        events = Events()
        ticket = submit(self.served[model].scheduler, request, events)
        return Stream(events, ticket.cancel)
