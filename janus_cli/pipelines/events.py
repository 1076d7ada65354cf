"""Events the pipelines yield; the CLI renders them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Step:
    """One step of a long loop (token or Euler step) finished."""

    done: int
    total: int


@dataclass
class ImageReady:
    index: int  # position in the run (0-based), names the output file
    seed: int  # the seed that re-makes this image alone
    prompt: str
    pixels: np.ndarray  # (H, W, 3) uint8


@dataclass
class ImageFailed:
    """An image that could not be made (a worker's forward failed); the run goes on."""

    index: int
    seed: int
    prompt: str
    error: str


@dataclass
class TextDelta:
    """New text of one answer, as it is decoded (only for single-row runs)."""

    index: int
    text: str


@dataclass
class TextReady:
    index: int
    text: str
    tokens: int
