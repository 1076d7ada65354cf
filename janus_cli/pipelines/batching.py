"""A run's images and how they are cut into forward passes.

Every image is self-contained (its job's prompt and settings, and its place k in the job), so a
batch can be made anywhere, alone, and gives the same images: the local engine and Ray workers
cut the same batches with `image_batches` and run each with the same one-forward function.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ImageJob:
    """SETTINGS.n images of PROMPT: image k is run index FIRST + k."""

    prompt: str
    settings: Any  # GenerateSettings or FlowSettings: n, seed, batch_key()
    first: int = 0


Image = tuple[ImageJob, int]  # (its job, k)


def batches(items: list[T], key: Callable[[T], Hashable], size: int) -> Iterator[list[T]]:
    """Runs of at most SIZE consecutive ITEMS with equal KEY(item)."""
    run: list[T] = []
    for item in items:
        if run and (len(run) == size or key(item) != key(run[0])):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def image_batches(jobs: list[ImageJob], size: int) -> list[list[Image]]:
    """The forward passes of a run: at most SIZE consecutive images each, prompts mixed, but
    one set of settings that must agree (`batch_key`: one CFG scale, one sampler, one step count)."""
    images = [(job, k) for job in jobs for k in range(job.settings.n)]
    return list(batches(images, lambda image: image[0].settings.batch_key(), size))
