"""Field checks shared by the request parsers: each failure is a 400 naming the field."""

from __future__ import annotations

import json

from janus_cli.server.errors import bad_request

MAX_DEPTH = 64  # nested arrays/objects in a body; OpenAI's own bodies nest 6 deep (an image part)


def json_object(raw: bytes) -> dict:
    """RAW (a request body) as a JSON object, whatever its Content-Type says (curl -d sends a
    form type); a 400 `invalid_json` if it is not one, or nests deeper than MAX_DEPTH.

    Python's parser recurses per level: `[` * 100000 raises RecursionError, a bad body like any
    other. The depth is capped well below that, so that no later step that recurses over the
    value (a repr in an error message) can overflow on a body the parser took."""
    too_deep = bad_request(f"the body nests arrays or objects over {MAX_DEPTH} deep", code="invalid_json")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the body is not valid JSON ({e})", code="invalid_json") from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    if _depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise too_deep
    return body


def _depth(body: dict | list, limit: int) -> int:
    """How deep BODY (decoded JSON) nests arrays and objects, counting past LIMIT only to
    LIMIT + 1; a loop, not a recursion."""
    deepest, todo = 1, [(body, 1)]
    while todo and deepest <= limit:
        value, depth = todo.pop()
        deepest = max(deepest, depth)
        items = value.values() if isinstance(value, dict) else value
        todo += [(v, depth + 1) for v in items if isinstance(v, (dict, list))]
    return deepest


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
