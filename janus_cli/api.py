"""The Python API: load a model once, then describe, generate and chat.

    import janus_cli
    m = janus_cli.load("janus-pro-1b")
    print(m.describe("photo.jpg"))
    for img in m.generate("a red fox in the snow", n=4, seed=42):
        img.save(f"fox-{img.seed}.png")

The command line, the Ray workers and the server stand on this module and on `pipelines/`.
Importing it loads no torch: `load()` does. One `Janus` object serves one thread at a time:
its methods hold a lock, so a second thread's call waits for the first to finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from janus_cli.errors import Cancelled, InputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from janus_cli.pipelines.session import Session

DEFAULT_QUESTION = "Describe this image in detail."
DEFAULT_MAX_TOKENS = 512
ImageInput = "str | Path | bytes | PILImage.Image"


def load(
    model: str = "janus-pro-1b",
    device: str = "auto",
    dtype: str = "auto",
    quantize: str = "none",
    revision: str | None = None,
    vae: str | None = None,
    *,
    compile: bool = False,
    parts: tuple[str, ...] | None = None,
    progress: bool = False,
    adapter: str | Path | None = None,
) -> Janus:
    """Load a checkpoint, downloading it on first use, and return it ready to run.

    Args:
        model: an alias (janus-pro-1b, janus-pro-7b, janus-1.3b, janusflow-1.3b), a hub repo
            id, or a checkpoint folder (as `janus -m` takes).
        device: auto, cpu, cuda or mps. dtype: auto (bf16 on CUDA and on CPUs with native
            bf16, else fp32), bfloat16 or float32 (float16 is refused: it breaks these models).
        quantize: none, int8 (weight-only int8 LLM and image-head linears) or int4 (4-bit
            LLM linears in groups of 64, an int8 image head).
        revision: hub branch, tag or commit.
        vae: JanusFlow's SDXL-VAE (folder, hub id or alias; default sdxl-vae), loaded on the
            first `generate`.
        compile: run the image-token step under torch.compile. parts: load only the weights
            for ("understanding",) or ("generation",) work (None: everything).
        progress: show the hub's download progress bars on stderr.
        adapter: a LoRA adapter folder (PEFT format, e.g. from `janus finetune`), merged into
            the weights at load; the images' recipes record it.
    Raises:
        JanusError: InputError (bad option), DownloadError, CheckpointError.
    """
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.pipelines.session import open_session
    from janus_cli.runtime import choose_device, choose_dtype, choose_quantize

    dev = choose_device(device)
    dt = choose_dtype(dtype, dev)
    quantize = choose_quantize(quantize)
    folder = resolve(model, revision, progress=progress)
    session = open_session(model, folder, dev, dt, quantize, compile, parts, adapter)
    return Janus(session, revision=revision, vae_ref=vae, progress=progress)


def load_vae(ref: str | None, session: Session, progress: bool = False):
    """The SDXL-VAE REF (default sdxl-vae) in SESSION's device and dtype."""
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.vae import load_vae as load_folder

    folder = resolve(ref or "sdxl-vae", progress=progress)
    return load_folder(folder, dtype=session.dtype, device=session.device)


@dataclass
class GeneratedImage:
    """One image of `Janus.generate`, with what re-makes it."""

    image: PILImage.Image
    prompt: str
    seed: int  # image k of a call with seed S was drawn with S + k
    index: int  # its place in the call's images
    recipe: dict = field(repr=False)  # model, settings, prompt, seed, index: written into the PNG

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the PNG with its recipe as PNG text, atomically; never replaces a file unless
        OVERWRITE. Returns the path."""
        import numpy as np

        from janus_cli.imageio import png_metadata, save_png

        return save_png(np.asarray(self.image), Path(path), png_metadata(self.recipe), overwrite)


class Janus:
    """A loaded model. Make one with `janus_cli.load()`."""

    def __init__(
        self,
        session: Session,
        revision: str | None = None,
        vae_ref: str | None = None,
        progress: bool = False,
    ):
        self.session = session
        self.revision = revision
        self._vae_ref, self._vae, self._progress = vae_ref, None, progress
        self._lock = threading.RLock()

    @property
    def family(self) -> str:
        """ "janus" (Janus-1.3B, Janus-Pro) or "janusflow"."""
        return self.session.config.family

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def vae(self):
        """JanusFlow's image decoder, loaded on first use (None for the Janus family)."""
        if self.family != "janusflow":
            return None
        with self._lock:
            if self._vae is None:
                self._vae = load_vae(self._vae_ref, self.session, self._progress)
            return self._vae

    @property
    def adapter(self) -> str | None:
        """The name of the LoRA adapter merged at load, if any."""
        return None if self.session.adapter is None else self.session.adapter.name

    def __repr__(self) -> str:
        s = self.session
        dtype = str(s.dtype).removeprefix("torch.")
        extra = f", adapter={self.adapter!r}" if self.adapter else ""
        return f"Janus({s.name!r}, family={self.family!r}, device={s.device.type!r}, dtype={dtype!r}{extra})"

    # -- understanding --------------------------------------------------------------------

    def describe(
        self,
        image,
        question: str | None = None,
        *,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> str:
        """The answer to QUESTION (default: "Describe this image in detail.") about IMAGE.

        Args:
            image: a path, a PIL image, encoded bytes, or a list of them asked about together
                (one conversation; place them yourself with `<image_placeholder>` tags in
                QUESTION, or they go in front of it).
            temperature: 0 (default) is greedy. top_p: nucleus sampling. max_tokens: at most
                this many tokens (default 512, and what the context leaves). seed: for sampling
                (default 0, as the CLI).
        """
        return "".join(
            self.stream_describe(
                image, question, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
            )
        )

    def stream_describe(
        self,
        image,
        question: str | None = None,
        *,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """`describe`, yielding the answer's text as it is decoded."""
        from janus_cli.pipelines.events import TextDelta
        from janus_cli.pipelines.image_to_text import describe

        settings = _describe_settings(question or DEFAULT_QUESTION, temperature, top_p, max_tokens, seed)
        pictures = [_picture(x) for x in _as_list(image)]
        with self._lock:
            for event in describe(self.session, [pictures], settings):
                if isinstance(event, TextDelta):
                    yield event.text

    def chat(
        self,
        images: Sequence = (),
        *,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int = 0,
    ) -> Chat:
        """A conversation about IMAGES (attached to the first message); answer t is seeded seed + t."""
        chat = Chat(self, _describe_settings("", temperature, top_p, max_tokens, seed))
        chat.attach(images)
        return chat

    # -- generation -----------------------------------------------------------------------

    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        n: int = 1,
        cfg: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        steps: int | None = None,
        noise: str | None = None,
        batch_size: int | str = "auto",
        on_step: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """N images of each PROMPT (a string or a list of strings), in order.

        Args:
            cfg: classifier-free guidance (default 5 for Janus, 2 for JanusFlow; 1 = off).
            temperature, top_k, top_p: Janus's image-token sampling (default temperature 1;
                0 picks the most likely token). steps, noise: JanusFlow's Euler steps (default
                30) and noise ("per-image", default, or "official": one draw for all images).
            seed: image k of each prompt is drawn with seed + k, so it is the same image
                whatever N and BATCH_SIZE; without one, a random seed is chosen and recorded.
            batch_size: images per forward pass, or "auto" (what the free memory holds).
            on_step: called with (done, total) after every token (or Euler) step.
            cancel: when set, the call stops within one step, frees the KV cache and raises
                `janus_cli.Cancelled`; this object stays usable.
        Raises:
            JanusError: an option that does not apply to this model's family, a bad value, a
                prompt over the context; Cancelled.
        """
        from janus_cli.pipelines.batching import ImageJob, pick_seed
        from janus_cli.pipelines.images import batch_size as choose_batch_size
        from janus_cli.pipelines.images import check_prompts, make_images, run_base

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise InputError("empty prompt")
        settings = self._image_settings(n, cfg, temperature, top_k, top_p, pick_seed(seed), steps, noise)
        jobs = [ImageJob(p, settings, first=i * n) for i, p in enumerate(prompts)]
        size = _batch_size(batch_size)
        with self._lock:
            encoded, _ = check_prompts(self.session, jobs)
            size, _ = choose_batch_size(self.session, jobs, encoded, size)
            extra = (
                {"vae": self._vae_ref or "sdxl-vae", "noise": settings.noise}
                if self.family == "janusflow"
                else {}
            )
            dtype = str(self.session.dtype).removeprefix("torch.")
            s = self.session
            base = run_base(s.name, self.revision, dtype, s.quantize, adapter=s.adapter, **extra)
            return self._collect(
                jobs, make_images(self.session, jobs, size, encoded, self.vae), base, on_step, cancel
            )

    def _collect(self, jobs, events, base: dict, on_step, cancel) -> list[GeneratedImage]:
        from PIL import Image

        from janus_cli.pipelines.events import ImageReady, Step
        from janus_cli.pipelines.images import recipe

        by_index = {job.first + k: (job, k) for job in jobs for k in range(job.n)}
        made: list[GeneratedImage] = []
        try:
            if cancel is not None and cancel.is_set():
                raise Cancelled("generation cancelled")
            for event in events:
                if isinstance(event, Step):
                    if on_step is not None:
                        on_step(event.done, event.total)
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("generation cancelled")
                elif isinstance(event, ImageReady):
                    job, k = by_index[event.index]
                    made.append(
                        GeneratedImage(
                            Image.fromarray(event.pixels),
                            job.prompt,
                            event.seed,
                            event.index,
                            recipe(base, job, k),
                        )
                    )
        finally:
            events.close()  # a cancelled or failed loop leaves its generator mid-batch
            self.session.model.language_model.free_cache()
        return made

    def _image_settings(self, n, cfg, temperature, top_k, top_p, seed, steps, noise):
        from janus_cli.pipelines.checks import problems

        if self.family == "janusflow":
            from janus_cli.pipelines.text_to_image_flow import FlowSettings as Settings

            _refuse(self.name, "JanusFlow", temperature=temperature, top_k=top_k, top_p=top_p)
            values = {
                "n": n,
                "seed": seed,
                "cfg": 2.0 if cfg is None else cfg,
                "steps": 30 if steps is None else steps,
                "noise": "per-image" if noise is None else noise,
            }
        else:
            from janus_cli.pipelines.text_to_image import GenerateSettings as Settings

            _refuse(self.name, "Janus", steps=steps, noise=noise)
            values = {
                "n": n,
                "seed": seed,
                "cfg": 5.0 if cfg is None else cfg,
                "top_k": top_k,
                "top_p": top_p,
                "temperature": 1.0 if temperature is None else temperature,
            }
        for key, problem in problems(Settings.CHECKS, values):
            raise InputError(f"{key} {problem}")
        return Settings(**values)


class Chat:
    """A conversation about images with a loaded model (`Janus.chat`)."""

    def __init__(self, janus: Janus, settings):
        self.janus, self.settings = janus, settings
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (and any images waiting for the next message)."""
        self._messages: list[str] = []  # user, assistant, user, ... (images as tags)
        self._images: list = []  # the pictures of those tags, in order
        self._pending: list = []  # attached, waiting for the next user message
        self.history: list[dict] = []  # {"role": "user"|"assistant", "text": ..., "images": n}

    def attach(self, images: Sequence) -> None:
        """Attach IMAGES (paths, PIL images or bytes) to the next message."""
        self._pending += [_picture(x) for x in _as_list(images)]

    def ask(self, text: str, images: Sequence = ()) -> str:
        """The answer to TEXT (with IMAGES and any attached ones)."""
        return "".join(self.stream(text, images))

    def stream(self, text: str, images: Sequence = ()) -> Iterator[str]:
        """`ask`, yielding the answer as it is decoded. A turn that fails or is abandoned
        leaves the conversation as it was."""
        from dataclasses import replace

        from janus_cli.pipelines.batching import seed_for
        from janus_cli.pipelines.events import TextDelta, TextReady
        from janus_cli.pipelines.image_to_text import reply
        from janus_cli.prompts import IMAGE_TAG

        if IMAGE_TAG in text:
            raise InputError(f"attach images instead of writing {IMAGE_TAG}")
        pending = self._pending + [_picture(x) for x in _as_list(images)]
        message = IMAGE_TAG * len(pending) + ("\n" if pending else "") + text
        turn = len(self._messages) // 2
        settings = replace(self.settings, seed=seed_for(self.settings.seed, turn))
        answer = None
        with self.janus._lock:
            for event in reply(
                self.janus.session, [*self._messages, message], [*self._images, *pending], settings
            ):
                if isinstance(event, TextDelta):
                    yield event.text
                elif isinstance(event, TextReady):
                    answer = event
        self._messages += [message, answer.text]
        self._images += pending
        self._pending = []
        self.history += [
            {"role": "user", "text": text, "images": len(pending)},
            {"role": "assistant", "text": answer.text, "tokens": answer.tokens, "seed": settings.seed},
        ]


def _refuse(name: str, family: str, **given: Any) -> None:
    """An option given that the loaded family does not take is an error naming it."""
    for key, value in given.items():
        if value is not None:
            raise InputError(f"{key} does not apply to {name}, a {family} model")


def _batch_size(value: int | str) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"batch_size {value!r}: give a positive number or 'auto'")
    return value


def _describe_settings(
    question: str, temperature: float, top_p: float | None, max_tokens: int | None, seed: int | None
):
    from janus_cli.pipelines.checks import number, problems
    from janus_cli.pipelines.image_to_text import DescribeSettings

    values = {
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "seed": 0 if seed is None else seed,
    }
    checks = {
        "temperature": number(float, 0),
        "top_p": number(float, 1e-9, 1, optional=True),
        "max_tokens": number(int, 1),
        "seed": number(int, 0),
    }
    for key, problem in problems(checks, values):
        raise InputError(f"{key} {problem}")
    return DescribeSettings(question=question, **values)


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _picture(x):
    """A path, bytes or PIL image as an RGB PIL image (InputError when unreadable)."""
    from PIL import Image

    from janus_cli.imageio import load_image

    if isinstance(x, Image.Image):
        return x.convert("RGB")
    if isinstance(x, (str, Path, bytes)):
        return load_image(x)
    raise InputError(f"an image is a path, bytes or a PIL image, not {type(x).__name__}")
