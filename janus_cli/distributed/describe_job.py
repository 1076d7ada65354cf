"""`janus describe --engine ray`: the local engine's batches (consecutive runs of the image
list, so image i still answers with seed + i), decoded on CPU tasks, answered on actors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from janus_cli.distributed import cluster
from janus_cli.errors import InputError
from janus_cli.pipelines import describing
from janus_cli.pipelines.batching import seed_for


def describe_on_ray(
    opts: cluster.RayOptions,
    ref: cluster.ModelRef,
    items: list[describing.Item],
    settings,
    keep_going: bool,
    on_text: Callable[[str, str, int], None],
    on_error: Callable[[str, str], None],
) -> int:
    """Describe ITEMS on the cluster, calling ON_TEXT / ON_ERROR exactly as the local engine
    does, in order of completion. Without KEEP_GOING the first failed image stops the run.
    Returns the number of tokens generated."""
    rows = [
        {"positions": [i for i, _ in run], "names": [name for _, name in run]}
        for run in describing.consecutive_runs(items, settings.batch_size)
    ]
    worker_args = {"ref": ref, "settings": settings, "threads": opts.cpus_per_worker}
    seen: set[int] = set()
    tokens = 0
    for row in cluster.stream(rows, DescribeWorker, worker_args, opts, decode=decode_images):
        if row["position"] in seen:  # a batch re-run after its actor died
            continue
        seen.add(row["position"])
        if row["error"]:
            if not keep_going:
                raise InputError(row["error"])
            on_error(row["name"], row["error"])
        else:
            tokens += row["tokens"]
            on_text(row["name"], row["text"], row["tokens"])
    return tokens


def decode_images(row: dict) -> dict:
    """A CPU task: the row's images as raw RGB bytes, or the reason one cannot be read."""
    from janus_cli.imageio import load_image

    rgb, sizes, errors = [], [], []
    for name in row["names"]:
        try:
            img = load_image(name)
        except InputError as e:
            rgb.append(b"")
            sizes.append([0, 0])
            errors.append(str(e))
            continue
        rgb.append(img.tobytes())
        sizes.append(list(img.size))
        errors.append("")
    return {**row, "rgb": rgb, "sizes": sizes, "errors": errors}


class DescribeWorker:
    """A Ray actor holding one copy of the model."""

    def __init__(self, ref: cluster.ModelRef, settings, threads: int):
        self.session = cluster.open_model(ref, threads).session
        self.settings = settings

    def __call__(self, batch: dict) -> dict:
        out: dict[str, list] = {"position": [], "name": [], "text": [], "tokens": [], "error": []}

        def add(position: int, name: str, text: str = "", tokens: int = 0, error: str = "") -> None:
            for key, value in zip(out, (position, name, text, tokens, error), strict=True):
                out[key].append(value)

        for positions, names, rgb, sizes, errors in zip(
            batch["positions"], batch["names"], batch["rgb"], batch["sizes"], batch["errors"], strict=True
        ):
            items = [(int(i), str(name)) for i, name in zip(positions, names, strict=True)]
            pictures = {}
            for item, data, size, error in zip(items, rgb, sizes, errors, strict=True):
                if error:
                    add(*item, error=str(error))
                else:
                    pictures[item] = _image(data, size)
            for run in describing.consecutive_runs(list(pictures), self.settings.batch_size):
                answers: list[tuple[str, str, int]] = []
                step = replace(self.settings, seed=seed_for(self.settings.seed, run[0][0]))
                labels = [
                    str(k) for k in range(len(run))
                ]  # answers name their row: an image may be listed twice
                try:
                    describing.answer(
                        self.session,
                        [[pictures[item]] for item in run],
                        labels,
                        step,
                        lambda text: None,
                        lambda *answer, into=answers: into.append(answer),  # bound now: B023
                    )
                except Exception as e:  # a model error fails this batch's items, not the job
                    for item in run:
                        add(*item, error=f"{item[1]}: {cluster.describe_error(e)}")
                    continue
                for label, text, tokens in answers:
                    add(*run[int(label)], text, tokens)
        return out


def _image(data: bytes, size):
    from PIL import Image

    return Image.frombytes("RGB", (int(size[0]), int(size[1])), bytes(data))
