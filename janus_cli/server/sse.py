"""From the scheduler's worker thread to the HTTP client: an asyncio bridge for a ticket's
events, a disconnect watcher, and a Server-Sent Events response.

The scheduler calls `on_event` from its worker thread; `Events` hands each event to the event
loop with `call_soon_threadsafe`, so no handler ever blocks on torch. A client that goes away
(closes its connection or its stream) is noticed by a task waiting on the ASGI `receive` for
`http.disconnect`, which cancels the ticket: its rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

DONE = b"data: [DONE]\n\n"


class Events:
    """The events of one ticket, as an async iterator that ends after `Finished`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()

    def __call__(self, event) -> None:  # the scheduler's worker thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def __aiter__(self):
        from janus_cli.pipelines.scheduler import Finished

        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, Finished):
                return


def watch_disconnect(receive, on_disconnect: Callable[[], None]) -> asyncio.Task:
    """A task that calls ON_DISCONNECT when the client goes away; cancel it when done. Call it
    after the request body is read: `receive` then only reports the disconnect."""

    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        on_disconnect()

    return asyncio.create_task(wait())


def frame(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream:
    """A `text/event-stream` response of the frames CHUNKS yields (bytes, from `frame`);
    ON_DISCONNECT (a ticket's cancel) runs when the client leaves, and once more at the end."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        on_disconnect: Callable[[], None],
        headers: dict[str, str] | None = None,
    ):
        self.chunks, self.on_disconnect, self.headers = chunks, on_disconnect, headers or {}
        self.status_code = 200

    async def __call__(self, scope, receive, send) -> None:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **self.headers,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        watcher = watch_disconnect(receive, self.on_disconnect)
        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watcher.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke while writing
            pass
        finally:
            watcher.cancel()
            self.on_disconnect()  # however the stream ended; a no-op for a finished ticket
