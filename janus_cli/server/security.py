"""The server's gate, one ASGI middleware in front of every route, checked in this order:

1. Host header: localhost names, IP literals, the bound host and `--allowed-host` pass; any
   other name is 403. This blocks DNS rebinding, where a web page's own domain is pointed at
   127.0.0.1 so that the browser lets it read a local server (the Host it sends is then that
   domain). An IP literal cannot be rebound, so it always passes.
2. CORS: headers only for an `Origin` that is exactly one of `--allow-origin`; a preflight from
   any other origin is 403. Without `--allow-origin` no page of another origin can read replies.
3. API key (`--api-key` / JANUS_API_KEY): `Authorization: Bearer KEY`, compared in constant
   time (hmac.compare_digest); 401 otherwise. /health, the page and /files/ stay open (file
   names are 128 random bits, unguessable, so a plain <img src> or `curl` of a `url` works).
4. Body size (`--max-body-mb`): a Content-Length over the limit is 413 before anything is read,
   and a chunked body is cut off at the limit (413).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

from janus_cli.server.errors import ApiError

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
OPEN_PATHS = ("/health", "/files/", "/static/")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class Policy:
    api_key: str | None = None
    bound_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)  # "*" lets every Host in
    allow_origins: frozenset[str] = field(default_factory=frozenset)
    max_body_bytes: int = 20 * 2**20

    def host_ok(self, header: str | None) -> bool:
        if "*" in self.allowed_hosts:
            return True
        name = host_name(header)
        if not name:
            return False
        if name in LOCAL_NAMES or name.endswith(".localhost") or is_ip(name):
            return True
        return name == self.bound_host.lower() or name in {h.lower() for h in self.allowed_hosts}

    def key_ok(self, authorization: str | None) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        # compare_digest on bytes of any length takes time independent of where they differ
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )


def host_name(header: str | None) -> str:
    """The host of a Host header, lower case, without the port or IPv6 brackets."""
    h = (header or "").strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else ""
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_open(path: str) -> bool:
    return path == "/" or path.startswith(OPEN_PATHS)


class Guard:
    """ASGI middleware applying POLICY (see the module docstring) to every HTTP request."""

    def __init__(self, app, policy: Policy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        p = self.policy
        if not p.host_ok(headers.get("host")):
            name = host_name(headers.get("host")) or "(none)"
            message = f"host {name} is not allowed: add --allowed-host {name} to serve it"
            return await _send_error(send, ApiError(403, message, code="host_not_allowed"))
        origin = headers.get("origin")
        allowed_origin = origin if origin is not None and origin in p.allow_origins else None
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            if allowed_origin is None:
                return await _send_error(
                    send,
                    ApiError(
                        403, f"origin {origin} is not allowed (--allow-origin)", code="origin_not_allowed"
                    ),
                )
            return await _send_preflight(send, allowed_origin)
        send = _with_cors(send, allowed_origin) if allowed_origin else send
        if not is_open(scope["path"]) and not p.key_ok(headers.get("authorization")):
            message = "missing or wrong API key: send Authorization: Bearer KEY"
            return await _send_error(send, ApiError(401, message, code="invalid_api_key"))
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > p.max_body_bytes:
            return await _send_error(send, _too_large(p.max_body_bytes))
        await self.app(scope, _limited(receive, p.max_body_bytes), send)


class BodyTooLarge(Exception):
    """A chunked body passed --max-body-mb; the app answers 413 (see app.py)."""


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body over the server's limit of {limit / 2**20:g} MB (--max-body-mb)",
        code="request_too_large",
    )


def _limited(receive, limit: int):
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(_too_large(limit).message)
        return message

    return wrapped


def _with_cors(send, origin: str):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            message["headers"] = [*message.get("headers", []), *cors]
        await send(message)

    return wrapped


async def _send_preflight(send, origin: str) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers", b"authorization, content-type"),
        (b"access-control-max-age", b"600"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _send_error(send, error: ApiError) -> None:
    import json

    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
