"""One image run, for every front end and both families: prompts checked and tokenized once,
the batch size, the forwards, and the recipe each image carries.

The CLI (with its files), the Python API (with its cancel event) and the Ray driver all walk
the same steps: `check_prompts` -> `batch_size` -> `make_images`.
"""

from __future__ import annotations

from collections.abc import Iterator

from janus_cli.errors import InputError
from janus_cli.pipelines.batching import ImageJob, image_batches
from janus_cli.pipelines.events import ImageReady, Step
from janus_cli.pipelines.session import Session


def encode(session: Session, prompt: str):
    """The prompt's ids for its family, checked to fit the context with the image (InputError)."""
    if session.config.family == "janusflow":
        from janus_cli.pipelines.text_to_image_flow import flow_prompt_ids

        return flow_prompt_ids(session, prompt)
    from janus_cli.pipelines.text_to_image import prompt_ids

    return prompt_ids(session, prompt)


def prompt_length(session: Session, ids) -> int:
    return len(ids[0]) if session.config.family == "janusflow" else len(ids)


def check_prompts(
    session: Session, jobs: list[ImageJob], keep_going: bool = False
) -> tuple[dict, dict[str, str]]:
    """Every distinct prompt of JOBS tokenized once: (prompt -> ids, prompt -> refusal). A
    refused prompt (over the context) raises, unless KEEP_GOING sets it aside."""
    encoded, refused = {}, {}
    for prompt in dict.fromkeys(job.prompt for job in jobs):
        try:
            encoded[prompt] = encode(session, prompt)
        except InputError as e:
            if not keep_going:
                raise
            refused[prompt] = str(e)
    return encoded, refused


def batch_size(
    session: Session, jobs: list[ImageJob], encoded: dict, requested: int | None
) -> tuple[int, str | None]:
    """REQUESTED, or for auto what the KV cache of the longest prompt's images lets fit in the
    free memory (pipelines/memory.py). Returns (size, why) where WHY explains an auto choice."""
    if requested is not None:
        return requested, None
    if not jobs:
        return 1, None
    from janus_cli.pipelines.memory import auto_batch_size, free_bytes, kv_bytes_per_image

    positions = (
        max(prompt_length(session, encoded[job.prompt]) for job in jobs) + session.config.image_tokens + 1
    )
    guided = any(job.settings.cfg != 1 for job in jobs)
    per_image = kv_bytes_per_image(session.config.llm, positions, session.dtype, guided)
    free = free_bytes(session.device)
    size = auto_batch_size(per_image, free, session.device, sum(job.n for job in jobs))
    room = "free memory unknown" if free is None else f"{free / 2**30:.1f} GiB free"
    return size, f"batch size {size} (auto: {per_image / 2**20:.0f} MiB of KV cache per image, {room})"


def make_images(
    session: Session, jobs: list[ImageJob], size: int, encoded: dict | None = None, vae=None
) -> Iterator[Step | ImageReady]:
    """Make the images of all JOBS in run order, in the forwards of `image_batches`. Each image
    draws from its own seed (`ImageJob.seed_of`), so it is the same image whatever the batch.
    VAE: the SDXL-VAE decoder of a JanusFlow session. Step counts token (or Euler) steps of
    the whole run; a consumer that stops iterating should `free_cache` the session's LLM."""
    if encoded is None:
        encoded, _ = check_prompts(session, jobs)  # refuse a long prompt before any work
    cut = image_batches(jobs, size)
    flow = session.config.family == "janusflow"
    if flow and vae is None:
        raise InputError("JanusFlow images need the SDXL-VAE decoder (vae=...)")

    def steps(batch) -> int:
        return batch[0][0].settings.steps if flow else session.config.image_tokens

    total, done = sum(steps(batch) * len(batch) for batch in cut), 0
    for batch in cut:
        if flow:
            from janus_cli.pipelines.text_to_image_flow import generate_flow_batch

            events = generate_flow_batch(session, vae, batch, encoded)
        else:
            from janus_cli.pipelines.text_to_image import generate_batch

            events = generate_batch(session, batch, encoded)
        for event in events:
            yield Step(done + event.done, total) if isinstance(event, Step) else event
        done += steps(batch) * len(batch)


def recipe(base: dict, job: ImageJob, k: int) -> dict:
    """What re-makes image K of JOB: BASE (model, dtype, ... of the run), the job's sampling
    settings, its prompt, seed and run index. Written into each PNG, sidecar and manifest line."""
    return {
        **base,
        **job.settings.options(),
        "prompt": job.prompt,
        "seed": job.seed_of(k),
        "index": job.first + k,
    }


def run_base(model: str, revision: str | None, dtype: str, quantize: str, adapter=None, **extra) -> dict:
    """The recipe fields a whole run shares (ADAPTER: the session's AdapterRef, if any; EXTRA:
    JanusFlow's vae and noise)."""
    from janus_cli.version import __version__

    return {
        "model": model,
        "revision": revision,
        **(adapter.recipe() if adapter is not None else {}),
        **extra,
        "dtype": dtype,
        "quantize": quantize,
        "generator": f"janus-cli {__version__}",
    }
