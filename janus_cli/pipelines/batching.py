"""A run's images, their seeds, and how they are cut into forward passes.

Every image is self-contained (its job's prompt and settings, and its place k in the job), so a
batch can be made anywhere, alone, and gives the same images: the local engine, the Python API,
Ray workers and the server cut the same batches with `image_batches` and run each with the same
one-forward function.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from janus_cli.errors import InputError

T = TypeVar("T")


def seed_for(seed: int, k: int) -> int:
    """The one seed rule of every front end: image (or answer) k of a run seeded SEED draws
    with SEED + k, so it is the same whatever the run's size and batches."""
    return seed + k


def pick_seed(seed: int | None) -> int:
    """SEED, or a random one to record when none is given."""
    return secrets.randbelow(2**31) if seed is None else seed


@dataclass(frozen=True)
class ImageJob:
    """SETTINGS.n images of PROMPT: image k is run index FIRST + k, drawn with `seed_of(k)`.

    The one request type for images: the CLI's prompt lines, the API's calls, Ray's rows and
    the server's requests all become ImageJobs.
    """

    prompt: str
    settings: Any  # GenerateSettings or FlowSettings: n, seed, image_seed(k), batch_key(), options()
    first: int = 0

    @property
    def n(self) -> int:
        return self.settings.n

    def seed_of(self, k: int) -> int:
        """The seed recorded for image K (the one that re-makes it)."""
        return self.settings.image_seed(k)

    def part(self, k: int, count: int) -> ImageJob:
        """Images K .. K+COUNT-1 as a job of their own: each keeps its index and its seed."""
        if k == 0 and count == self.n:
            return self
        if getattr(self.settings, "noise", "per-image") != "per-image":
            raise InputError("--noise official draws all of a prompt's images at once: they cannot be split")
        return replace(
            self, settings=replace(self.settings, n=count, seed=self.seed_of(k)), first=self.first + k
        )


Image = tuple[ImageJob, int]  # (its job, k)


def select_images(jobs: list[ImageJob], keep: Callable[[int], bool]) -> list[ImageJob]:
    """The images of JOBS whose run index i has KEEP(i), as jobs of consecutive images."""
    parts = []
    for job in jobs:
        k = 0
        while k < job.n:
            if not keep(job.first + k):
                k += 1
                continue
            end = k
            while end < job.n and keep(job.first + end):
                end += 1
            parts.append(job.part(k, end - k))
            k = end
    return parts


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
