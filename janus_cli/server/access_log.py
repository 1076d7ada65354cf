"""One line per request on stderr, when its response ends: who, what, status, seconds.

    127.0.0.1:50312 - "POST /v1/chat/completions HTTP/1.1" 200 1.482s

uvicorn's and vLLM's default access line, plus the time, and written when the response has
been sent, so a streamed answer's line gives its whole duration (and comes after it). uvicorn's
own access log stays off: one line per request, not two. `janus serve -q` or
`--no-access-log` turns it off.
"""

from __future__ import annotations

import sys
import time
from urllib.parse import quote

SAFE = "/?=&%:+,;@!$'()*~[]"  # left as they are in the target; anything else is %-escaped


def access_logged(app, on: bool):
    """APP (ASGI) writing an access line per HTTP request to stderr when ON; else APP itself."""
    return AccessLog(app) if on else app


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), None

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:  # a handler that raised before answering gets uvicorn's 500
            sys.stderr.write(line(scope, status or 500, time.perf_counter() - t0) + "\n")
            sys.stderr.flush()


def line(scope, status: int, seconds: float) -> str:
    """The access line of the request SCOPE. The path is %-escaped (as uvicorn does), so a
    request cannot write a line break or a forged line into the log."""
    host, port = scope.get("client") or ("-", 0)
    target = quote(scope.get("root_path", "") + scope["path"], safe=SAFE)
    if query := scope.get("query_string", b""):
        target += "?" + quote(query.decode("latin-1"), safe=SAFE)
    request = f"{scope['method']} {target} HTTP/{scope.get('http_version', '1.1')}"
    return f'{host}:{port} - "{request}" {status} {seconds:.3f}s'
