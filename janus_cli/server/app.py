"""The HTTP app: OpenAI-compatible routes over a backend that runs the served models.

Built on Starlette (+ uvicorn), not FastAPI: every body is validated here, by hand, so that
each refusal is an OpenAI error object (`{"error": {...}}`, see errors.py) naming its field;
FastAPI's pydantic models would answer 422s of another shape that we would have to override
route by route. Starlette is also FastAPI's own core, so this is fewer dependencies and a
faster start, for no missing feature.

Handlers never touch torch: they parse, `open` the request on the backend (backend.py: a
Scheduler in this process, pipelines/scheduler.py, or a Ray Serve replica's, ray_backend.py)
and await its events (sse.py). Routes, validation, SSE, metrics and security exist here once.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from janus_cli.server import openai_chat as chat
from janus_cli.server import openai_images as images
from janus_cli.server.access_log import access_logged
from janus_cli.server.backend import LocalBackend, ModelInfo, Stream
from janus_cli.server.errors import ApiError, bad_request, server_error
from janus_cli.server.metrics import CONTENT_TYPE, Metrics
from janus_cli.server.security import BodyTooLarge, Guard, Policy
from janus_cli.server.sse import DONE, EventStream, frame, watch_disconnect
from janus_cli.server.validate import json_object, optional

STATIC = Path(__file__).parent / "static"
PROGRESS_EVENTS = 48  # at most this many progress events per image in an image stream


@dataclass(frozen=True)
class Options:
    policy: Policy = field(default_factory=Policy)
    output_dir: Path = Path("janus-serve-images")
    max_n_per_batch: int = 4  # n is at most max_batch x this
    access_log: bool = False  # a line per request on stderr (access_log.py)


def create_app(backend: Any, options: Options):
    """The ASGI app serving BACKEND's models (a LocalBackend, a RayBackend, or a list of
    Models, served locally); the backend starts with the app and closes with it."""
    if isinstance(backend, list):
        backend = LocalBackend(backend)
    metrics = Metrics()
    started = int(time.time())

    def pick(name: str | None) -> ModelInfo:
        by_name = {m.name: m for m in backend.infos}
        if name is None:
            if len(by_name) == 1:
                return backend.infos[0]
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
        live = await backend.live()  # model -> schedulers running it (replicas on Ray)
        ok = all(live.values())
        body = {"status": "ok" if ok else "unavailable", "models": [m.name for m in backend.infos]}
        return JSONResponse({**body, "replicas": live}, status_code=200 if ok else 503)

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(m, started) for m in backend.infos]})

    async def get_model(request: Request) -> Response:
        return JSONResponse(_model_card(pick(request.path_params["name"]), started))

    async def scrape(request: Request) -> Response:
        return Response(metrics.scrape(await backend.stats()), media_type=CONTENT_TYPE)

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
        t0 = time.perf_counter()
        events = await backend.open(
            m.name,
            TextRequest(messages=call.messages, images=call.images, settings=settings, system=call.system),
        )
        cid = chat.completion_id()
        if call.stream:
            ttft = metrics.ttft.labels(m.name)
            first = lambda: ttft.observe(time.perf_counter() - t0)  # noqa: E731
            chunks = _chat_stream(events, cid, m.name, call.include_usage, first)
            return EventStream(chunks, events.cancel, events.headers)
        done, end = None, None
        async for event in _until_gone(events, request):
            kind = type(event).__name__
            if kind == "TextDone":
                done = event
            elif kind == "Finished":
                end = event
        _raise_unfinished(end)
        return JSONResponse(
            chat.completion(cid, m.name, done.text, done.finish_reason, done.prompt_tokens, done.tokens),
            headers=events.headers,
        )

    async def generations(request: Request) -> Response:
        body = await read_json(request)
        m = pick(optional(body, "model", str))
        call = images.parse_images(body, m.family, max_n=m.max_batch * options.max_n_per_batch)
        from janus_cli.pipelines.scheduler import ImageRequest

        request_ = ImageRequest(prompt=call.prompt, settings=images.settings(call, m.family))
        events = await backend.open(m.name, request_)
        base, files = m.base, str(request.base_url) + "files/"

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
            return EventStream(_image_stream(events, made), events.cancel, events.headers)
        out: dict[int, dict] = {}
        end = None
        async for event in _until_gone(events, request):
            kind = type(event).__name__
            if kind == "ImageDone":
                out[event.index] = await made(event)
            elif kind == "Finished":
                end = event
        _raise_unfinished(end)
        return JSONResponse(images.response([out[k] for k in sorted(out)]), headers=events.headers)

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
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error, Exception: _crash}
    )
    return access_logged(metrics.middleware(Guard(app, options.policy)), options.access_log)


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
    return json_object(await request.body())


async def _until_gone(events: Stream, request: Request):
    """EVENTS, cancelled if the client disconnects while they come, or if the handler stops
    reading them (cancel is a no-op once the request finished)."""
    watcher = watch_disconnect(request.receive, events.cancel)
    try:
        async for event in events:
            yield event
    finally:
        watcher.cancel()
        events.cancel()


def _raise_unfinished(end) -> None:
    if end is None or end.cancelled:
        raise ApiError(499, "the request was cancelled", code="cancelled")
    if end.error:
        raise ApiError(500, f"the request failed: {end.error}", type="server_error", code="generation_failed")


async def _chat_stream(events: Stream, cid: str, model: str, include_usage: bool, first_text):
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


async def _image_stream(events: Stream, made):
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


def _model_card(m: ModelInfo, created: int) -> dict:
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
