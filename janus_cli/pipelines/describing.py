"""Describing many images: a batch at a time, per-item failures (keep_going), and the
per-image seed (image i of the whole list answers with `seed_for(seed, i)`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from janus_cli.errors import InputError
from janus_cli.pipelines.batching import seed_for
from janus_cli.pipelines.image_to_text import DescribeSettings

Item = tuple[int, str]  # (position in the whole image list, name)
Load = Callable[[str], object]  # name -> PIL image (InputError when it cannot be read)


def consecutive_runs(items: list[Item], size: int) -> Iterator[list[Item]]:
    """Runs of at most SIZE items with consecutive positions (so one seed + offset serves a run)."""
    run: list[Item] = []
    for item in items:
        if run and (len(run) == size or item[0] != run[-1][0] + 1):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def load_batch(
    batch: list[Item], load: Load, keep_going: bool, failed: Callable[[str, str], None]
) -> list[tuple[Item, object]]:
    """The batch's images; with KEEP_GOING an unreadable one is reported to FAILED(name, message)."""
    loaded = []
    for item in batch:
        try:
            loaded.append((item, load(item[1])))
        except InputError as e:
            if not keep_going:
                raise
            failed(item[1], str(e))
    return loaded


def describe_items(
    session,
    items: list[Item],
    load: Load,
    settings: DescribeSettings,
    keep_going: bool,
    on_delta,
    on_text,
    on_error,
) -> int:
    """Describe each item, SETTINGS.batch_size at a time; ON_TEXT(name, text, tokens) per answer,
    ON_DELTA(text) as a lone answer streams, ON_ERROR(name, message) per failed image with
    KEEP_GOING. Returns the number of tokens generated."""
    tokens = 0
    for batch in consecutive_runs(items, settings.batch_size):
        loaded = load_batch(batch, load, keep_going, on_error)
        pictures = dict(loaded)
        for run in consecutive_runs([item for item, _ in loaded], settings.batch_size):
            step = replace(settings, seed=seed_for(settings.seed, run[0][0]))
            tokens += answer(
                session,
                [[pictures[item]] for item in run],
                [name for _, name in run],
                step,
                on_delta,
                on_text,
            )
    return tokens


def answer(
    session, groups: list[list], names: list[str], settings: DescribeSettings, on_delta, on_text
) -> int:
    """Answer SETTINGS.question about each group of images (row i seeded seed + i), calling
    ON_TEXT(names[i], text, tokens) per answer and ON_DELTA(text) as a lone answer streams."""
    from janus_cli.pipelines.events import TextDelta, TextReady
    from janus_cli.pipelines.image_to_text import describe

    tokens = 0
    for event in describe(session, groups, settings):
        if isinstance(event, TextDelta):
            on_delta(event.text)
        elif isinstance(event, TextReady):
            tokens += event.tokens
            on_text(names[event.index], event.text, event.tokens)
    return tokens


def pick_items(names: list[str], owned: range, done: set[tuple[str, str]], prompt: str) -> list[Item]:
    """The items this run does: the positions OWNED (its shard) of NAMES, less the (image,
    prompt) pairs in DONE."""
    return [(i, names[i]) for i in owned if (names[i], prompt) not in done]


def finished(records: list[dict]) -> set[tuple[str, str]]:
    """(image, prompt) of each manifest record with an answer (failed ones are retried)."""
    return {(r.get("image"), r.get("prompt")) for r in records if "text" in r}
