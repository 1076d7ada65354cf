"""The state of a `janus chat`: the turns so far, their images, and /imagine."""

from __future__ import annotations

from collections.abc import Iterator

from janus_cli.cli import image_run, images, inputs, jobs
from janus_cli.errors import InputError
from janus_cli.pipelines.events import TextDelta, TextReady
from janus_cli.pipelines.image_to_text import DescribeSettings, reply
from janus_cli.prompts import IMAGE_TAG


class Conversation:
    def __init__(self, session, max_tokens: int, temperature: float, top_p: float | None, seed: int, output: str, quiet: bool, mode: str = "text"):
        self.session, self.output, self.quiet, self.mode = session, output, quiet, mode  # mode: how /imagine prints its image
        self.settings = DescribeSettings(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        self.imagined = 0
        self.reset()

    def reset(self) -> None:
        self.messages: list[str] = []  # user, assistant, user, ...
        self.images: list = []  # the pictures of the tags in MESSAGES, in order
        self.pending: list = []  # attached, waiting for the next user message
        self.names: list[str] = []  # the paths of PENDING
        self.last: dict | None = None  # the last answer's record

    def attach(self, path: str) -> None:
        """Attach the image PATH to the next message."""
        if not path:
            raise InputError("/image needs a path")
        self.pending.append(inputs.load(path, None))
        self.names.append(path)

    def say(self, text: str) -> Iterator[str]:
        """The answer to TEXT (with the attached images), as it streams. A turn that fails
        (say, over the context) leaves the conversation as it was."""
        if IMAGE_TAG in text:
            raise InputError(f"attach images with /image PATH, not {IMAGE_TAG}")
        message = IMAGE_TAG * len(self.pending) + ("\n" if self.pending else "") + text
        turn = len(self.messages) // 2
        settings = DescribeSettings(**{**self.settings.__dict__, "seed": self.settings.seed + turn})
        answer = None
        for event in reply(self.session, [*self.messages, message], [*self.images, *self.pending], settings):
            if isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, TextReady):
                answer = event
        self.last = {"turn": turn, "user": text, "images": self.names, "text": answer.text, "tokens": answer.tokens, "seed": settings.seed}
        self.messages += [message, answer.text]
        self.images += self.pending
        self.pending, self.names = [], []

    def imagine(self, prompt: str) -> None:
        """Make one image of PROMPT into the output folder; its path goes to stdout."""
        if not prompt:
            raise InputError("/imagine needs a prompt")
        if self.session.config.family != "janus":
            raise InputError(f"/imagine needs a Janus or Janus-Pro model; {self.session.name} is {self.session.config.family}")
        from janus_cli.pipelines.batching import ImageJob
        from janus_cli.pipelines.text_to_image import GenerateSettings, generate_jobs, prompt_ids

        seed, index = self.settings.seed + self.imagined, self.imagined
        work = [jobs.Job(prompt, 1, seed, index, {"cfg": 5.0, "temperature": 1.0, "top_k": None, "top_p": None})]
        seed_of = lambda j, k: j.seed + k  # noqa: E731
        out = image_run.Output(self.output, mode=self.mode, quiet=self.quiet)
        plan = image_run.plan(work, seed_of, self.session.name, out, None)
        image_run.check_prompts(plan, lambda p: prompt_ids(self.session, p), keep_going=False)
        base = {"model": self.session.name, "generator": f"janus-cli {images.version()}"}
        job = ImageJob(prompt, GenerateSettings(n=1, seed=seed, **work[0].options), index)
        image_run.write_images(plan, generate_jobs(self.session, [job], batch_size=1), seed_of, base, out, None)
        self.imagined += 1
