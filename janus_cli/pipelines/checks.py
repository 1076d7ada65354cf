"""Checks on the values a run's settings take, shared by every front end (prompt-file lines,
the Python API, the server): one message per bad value, naming it."""

from __future__ import annotations

from collections.abc import Callable

Check = Callable[[object], "str | None"]


def number(kind: type, low: float | None = None, high: float | None = None, optional: bool = False) -> Check:
    """A KIND number in [LOW, HIGH] (None allowed when OPTIONAL): value -> problem or None."""

    def check(value) -> str | None:
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (kind is int and not isinstance(value, int))
        ):
            return f"must be {'an integer' if kind is int else 'a number'}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"must be in [{low}, {high if high is not None else 'inf'}]"
        return None

    return check


def one_of(*choices: str) -> Check:
    def check(value) -> str | None:
        return None if value in choices else f"must be {' or '.join(map(repr, choices))}"

    return check


def problems(checks: dict[str, Check], values: dict) -> list[tuple[str, str]]:
    """(key, problem) for each value of VALUES its check refuses (keys without a check pass)."""
    return [(key, p) for key, value in values.items() if key in checks and (p := checks[key](value))]
