"""Field checks shared by the request parsers: each failure is a 400 naming the field."""

from __future__ import annotations

from janus_cli.server.errors import bad_request


def number(value, kind: type, name: str, low: float | None = None, high: float | None = None):
    """VALUE as KIND (int or float) within [LOW, HIGH]; a bool, or a float with a fraction
    for an int, is refused."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and ok and not float(value).is_integer():
        ok = False
    if not ok:
        raise bad_request(f"{name}: {value!r} is not {'an integer' if kind is int else 'a number'}", name)
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"between {low} and {high}"
        raise bad_request(f"{name}: {value} must be {span}", name)
    return value


def optional(body: dict, name: str, kind: type):
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"{name}: {value!r} is not a {kind.__name__}", name)
    return value
