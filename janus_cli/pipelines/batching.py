"""Cutting a run's images into forward passes."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batches(items: list[T], key: Callable[[T], Hashable], size: int) -> Iterator[list[T]]:
    """Runs of at most SIZE consecutive ITEMS with equal KEY(item): what must agree to share a
    forward (one CFG scale, one sampler, one step count)."""
    run: list[T] = []
    for item in items:
        if run and (len(run) == size or key(item) != key(run[0])):
            yield run
            run = []
        run.append(item)
    if run:
        yield run
