"""The HTTP app: OpenAI-compatible routes over one scheduler per served model.

Built on Starlette (+ uvicorn), not FastAPI: every body is validated here, by hand, so that
each refusal is an OpenAI error object (`{"error": {...}}`, see errors.py) naming its field;
FastAPI's pydantic models would answer 422s of another shape that we would have to override
route by route. Starlette is also FastAPI's own core, so this is fewer dependencies and a
faster start, for no missing feature.

Handlers never touch torch: they parse, `submit` to the model's Scheduler (pipelines/
scheduler.py, whose worker thread alone runs the model) and await its events (sse.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from janus_cli.server import openai_chat as chat
from janus_cli.server import openai_images as images
from janus_cli.server.errors import ApiError, bad_request, server_error
from janus_cli.server.metrics import CONTENT_TYPE, Metrics
from janus_cli.server.security import BodyTooLarge, Guard, Policy
from janus_cli.server.sse import DONE, Events, EventStream, frame, watch_disconnect
from janus_cli.server.validate import optional

STATIC = Path(__file__).parent / "static"
PROGRESS_EVENTS = 48  # at most this many progress events per image in an image stream


@dataclass
class Model:
    """A served model: its name in requests, the loaded `Janus`, its scheduler."""

    name: str
    janus: object  # janus_cli.Janus
    scheduler: object  # pipelines.scheduler.Scheduler
    max_batch: int
    vae: str | None = None  # JanusFlow's VAE reference, for the recipe

    @property
    def family(self) -> str:
        return self.janus.family

    def base_record(self) -> dict:
        """The recipe fields of every image this model makes, as `janus generate` records them."""
        from janus_cli.pipelines.images import run_base

        s = self.janus.session
        extra = {"vae": self.vae} if self.family == "janusflow" else {}
        return run_base(
            s.name, None, str(s.dtype).removeprefix("torch."), s.quantize, adapter=s.adapter, **extra
        )


@dataclass(frozen=True)
class Options:
    policy: Policy = field(default_factory=Policy)
    output_dir: Path = Path("janus-serve-images")
    max_n_per_batch: int = 4  # n is at most max_batch x this


def create_app(models: list[Model], options: Options):
    """The ASGI app serving MODELS (their schedulers start with the app and close with it)."""
    by_name = {m.name: m for m in models}
    metrics = Metrics({m.name: m.scheduler for m in models})
    started = int(time.time())

    def pick(name: str | None) -> Model:
        if name is None:
            if len(by_name) == 1:
                return models[0]
            raise bad_request(
                f"model: required when several models are served ({', '.join(by_name)})", "model"
            )
        if name not in by_name:
            raise ApiError(
                404,
                f"the model {name!r} does not exist; served: {', '.join(by_name)}",
                "model",
                "model_not_found",
            )
        return by_name[name]

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(by_name)})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(m, started) for m in models]})

    async def get_model(request: Request) -> Response:
        return JSONResponse(_model_card(pick(request.path_params["name"]), started))

    async def scrape(request: Request) -> Response:
        return Response(metrics.scrape(), media_type=CONTENT_TYPE)

    async def chat_completions(request: Request) -> Response:
        call = await run_in_threadpool(
            chat.parse_chat, await read_json(request)
        )  # decodes images: off the loop
        m = pick(call.model)
        from janus_cli.pipelines.image_to_text import DescribeSettings
        from janus_cli.pipelines.scheduler import TextRequest

        settings = DescribeSettings(
            max_tokens=call.max_tokens, temperature=call.temperature, top_p=call.top_p, seed=call.seed
        )
        events = Events()
        ticket = submit(
            m,
            TextRequest(messages=call.messages, images=call.images, settings=settings, system=call.system),
            events,
        )
        cid, t0 = chat.completion_id(), time.perf_counter()
        if call.stream:
            ttft = metrics.ttft.labels(m.name)
            first = lambda: ttft.observe(time.perf_counter() - t0)  # noqa: E731
            return EventStream(_chat_stream(events, cid, m.name, call.include_usage, first), ticket.cancel)
        done, end = None, None
        async for event in _until_gone(events, request, ticket):
            kind = type(event).__name__
            if kind == "TextDone":
                done = event
            elif kind == "Finished":
                end = event
        _raise_unfinished(end)
        return JSONResponse(
            chat.completion(cid, m.name, done.text, done.finish_reason, done.prompt_tokens, done.tokens)
        )

    async def generations(request: Request) -> Response:
        body = await read_json(request)
        m = pick(optional(body, "model", str))
        call = images.parse_images(body, m.family, max_n=m.max_batch * options.max_n_per_batch)
        from janus_cli.pipelines.scheduler import ImageRequest

        events = Events()
        ticket = submit(m, ImageRequest(prompt=call.prompt, settings=images.settings(call, m.family)), events)
        base, files = m.base_record(), str(request.base_url) + "files/"

        async def made(event) -> dict:
            from janus_cli.imageio import png_metadata

            data = await run_in_threadpool(
                images.png_bytes,
                event.pixels,
                png_metadata(images.record(call, base, event.index, event.seed)),
            )
            url = (
                files + await run_in_threadpool(images.write_file, options.output_dir, data)
                if call.url
                else None
            )
            return images.item(data, event.seed, url)

        if call.stream:
            return EventStream(_image_stream(events, made), ticket.cancel)
        out: dict[int, dict] = {}
        end = None
        async for event in _until_gone(events, request, ticket):
            kind = type(event).__name__
            if kind == "ImageDone":
                out[event.index] = await made(event)
            elif kind == "Finished":
                end = event
        _raise_unfinished(end)
        return JSONResponse(images.response([out[k] for k in sorted(out)]))

    async def serve_file(request: Request) -> Response:
        import re

        name = request.path_params["name"]
        path = options.output_dir / name
        if not re.fullmatch(images.FILE_NAME, name) or not path.is_file():
            raise ApiError(404, f"no file {name}", code="not_found")
        return FileResponse(path, media_type="image/png")

    routes = [
        Route("/health", guarded(health)),
        Route("/metrics", guarded(scrape)),
        Route("/v1/models", guarded(list_models)),
        Route("/v1/models/{name:path}", guarded(get_model)),
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/images/generations", guarded(generations), methods=["POST"]),
        Route("/files/{name}", guarded(serve_file)),
    ]
    if (STATIC / "index.html").is_file():  # the web page (janus_cli/server/static)
        from starlette.staticfiles import StaticFiles

        routes += [
            Route("/", lambda r: FileResponse(STATIC / "index.html")),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for m in models:
            m.scheduler.start()
        try:
            yield
        finally:
            for m in models:
                await run_in_threadpool(m.scheduler.close)

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error, Exception: _crash}
    )
    return metrics.middleware(Guard(app, options.policy))


def guarded(handler):
    """HANDLER with every failure as an OpenAI error: ApiError as itself, a body over the
    limit as 413, anything else as a 500 without traceback (printed on the server's stderr)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as e:
            return e.response()
        except BodyTooLarge as e:
            return ApiError(413, str(e), code="request_too_large").response()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return server_error().response()

    return endpoint


async def read_json(request: Request) -> dict:
    """The body as a JSON object, whatever its Content-Type says (curl -d sends a form type)."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the body is not valid JSON ({e})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    return body


def submit(m: Model, request, events: Events):
    """REQUEST queued on M's scheduler: bad input is a 400, a full queue a 429 with Retry-After."""
    from janus_cli.errors import JanusError
    from janus_cli.pipelines.scheduler import QueueFull

    try:
        return m.scheduler.submit(request, events)
    except QueueFull as e:
        raise ApiError(
            429,
            f"{e}; retry in {e.retry_after} s",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(int(e.retry_after))},
        ) from None
    except JanusError as e:
        raise bad_request(str(e), code="invalid_input") from None


async def _until_gone(events: Events, request: Request, ticket):
    """EVENTS, cancelling TICKET if the client disconnects while they come, or if the handler
    stops reading them (cancel is a no-op once the ticket finished)."""
    watcher = watch_disconnect(request.receive, ticket.cancel)
    try:
        async for event in events:
            yield event
    finally:
        watcher.cancel()
        ticket.cancel()


def _raise_unfinished(end) -> None:
    if end is None or end.cancelled:
        raise ApiError(499, "the request was cancelled", code="cancelled")
    if end.error:
        raise ApiError(500, f"the request failed: {end.error}", type="server_error", code="generation_failed")


async def _chat_stream(events: Events, cid: str, model: str, include_usage: bool, first_text):
    created = int(time.time())
    yield frame(chat.chunk(cid, model, created, {"role": "assistant", "content": ""}))
    done, seen = None, False
    async for event in events:
        kind = type(event).__name__
        if kind == "TextDelta" and event.text:
            if not seen:
                first_text()
                seen = True
            yield frame(chat.chunk(cid, model, created, {"content": event.text}))
        elif kind == "TextDone":
            done = event
        elif kind == "Finished" and event.error:
            yield frame(server_error(f"the request failed: {event.error}").body())
        elif kind == "Finished" and done is not None:
            yield frame(chat.chunk(cid, model, created, {}, done.finish_reason))
            if include_usage:
                yield frame(
                    chat.chunk(cid, model, created, None, use=chat.usage(done.prompt_tokens, done.tokens))
                )
    yield DONE


async def _image_stream(events: Events, made):
    """Progress events (at most PROGRESS_EVENTS per image), one completed event per image."""
    async for event in events:
        kind = type(event).__name__
        if kind == "ImageStep":
            every = max(1, event.steps // PROGRESS_EVENTS)
            if event.step % every == 0 or event.step == event.steps:
                yield frame(
                    {
                        "type": "image_generation.progress",
                        "index": event.index,
                        "step": event.step,
                        "steps": event.steps,
                    }
                )
        elif kind == "ImageDone":
            item = await made(event)
            done = {
                "type": "image_generation.completed",
                "index": event.index,
                "created_at": int(time.time()),
            }
            yield frame({**done, "size": images.SIZE, "output_format": "png", **item})
        elif kind == "Finished" and event.error:
            yield frame(server_error(f"the request failed: {event.error}").body())
    yield DONE


def _model_card(m: Model, created: int) -> dict:
    return {
        "id": m.name,
        "object": "model",
        "created": created,
        "owned_by": "janus-cli",
        "family": m.family,
        "max_batch": m.max_batch,
    }


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = (
        f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    )
    return ApiError(exc.status_code, message, code=code).response()


async def _crash(request: Request, exc: Exception) -> Response:
    return server_error().response()
