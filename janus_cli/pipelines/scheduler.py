"""One model's worker: requests share token steps (continuous batching), and nothing else
touches the model. Library code, no HTTP: a front end submits requests and gets events through
a callback called from the worker thread.

Each turn of the worker admits what fits (prefilling newcomers alone), then runs one image step
(Janus: every running image's next token in one forward, `image_rows`; JanusFlow: one Euler step
of the running batch, `flow_run`) and one text step (every running answer's next token,
`text_rows`), so an answer never waits behind a long image batch. What a request gets never
depends on what shared its steps: each image and answer samples from its own generators.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from janus_cli.errors import JanusError
from janus_cli.pipelines.flow_run import FlowRun
from janus_cli.pipelines.image_rows import ImageRows
from janus_cli.pipelines.requests import (
    Event,
    Finished,
    ImageDone,
    ImageRequest,
    ImageStep,
    TextDelta,
    TextDone,
    TextRequest,
    check_request,
)
from janus_cli.pipelines.text_rows import TextRows

__all__ = [
    "Scheduler",
    "ImageRequest",
    "TextRequest",
    "Ticket",
    "QueueFull",
    "SchedulerStats",
    "ImageStep",
    "ImageDone",
    "TextDelta",
    "TextDone",
    "Finished",
]

log = logging.getLogger(__name__)
SHUTDOWN = "server shutting down"


class QueueFull(JanusError):
    """max_queue requests are already waiting; RETRY_AFTER (seconds, >= 1) is a guess of when
    one will have started."""

    exit_code = 2

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class SchedulerStats:
    queue_depth: int = 0  # requests waiting, none of their work started
    active_images: int = 0
    active_text_rows: int = 0
    rows_last_step: int = 0  # LLM rows (cond + uncond + text) that took the last step
    steps: int = 0  # worker turns that stepped some rows
    image_tokens: int = 0  # image codes sampled (JanusFlow: Euler steps x images)
    images_made: int = 0
    text_tokens: int = 0
    busy_seconds: float = 0.0


class Ticket:
    """A submitted request: its events go to ON_EVENT; `cancel` is thread-safe."""

    def __init__(self, request, checked, on_event: Callable[[Event], None], wake: Callable[[], None]):
        self.request, self.kind, self.ids, self.max_tokens = (
            request,
            checked.kind,
            checked.ids,
            checked.max_tokens,
        )
        self.settings = request.settings
        self.prompt = getattr(request, "prompt", None)
        self.images = getattr(request, "images", [])
        n = self.settings.n if self.kind != "text" else 1
        self.pending = list(range(n))  # images not started yet
        self.left = n  # images not done yet
        self.started = False
        self.cancelled = False  # asked to stop
        self.finished = False
        self._on_event, self._wake, self._lock = on_event, wake, threading.Lock()

    def cancel(self) -> None:
        """Drop this request at the next step; it then gets Finished(cancelled=True)."""
        self.cancelled = True
        self._wake()

    @property
    def gone(self) -> bool:
        return self.cancelled or self.finished

    def emit(self, event: Event) -> None:
        if self.finished:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("an event callback raised; cancelling its request")
            self.cancelled = True

    def finish(self, error: str | None = None, cancelled: bool = False) -> None:
        """Send Finished, once."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
        try:
            self._on_event(Finished(error, cancelled))
        except Exception:
            log.exception("an event callback raised on Finished")

    def fail(self, exc: BaseException) -> None:
        log.warning("request failed: %s", exc, exc_info=not isinstance(exc, JanusError))
        self.finish(error=str(exc) or type(exc).__name__)


class Scheduler:
    """The worker of one loaded model (a pipelines.session.Session; VAE for JanusFlow images)."""

    def __init__(self, session, vae=None, max_batch: int = 8, max_queue: int = 64):
        if max_batch < 1 or max_queue < 0:
            raise JanusError(
                f"max_batch {max_batch} and max_queue {max_queue}: need max_batch >= 1, max_queue >= 0"
            )
        self.session, self.vae, self.max_batch, self.max_queue = session, vae, max_batch, max_queue
        self.family = session.config.family
        self._cv = threading.Condition()
        self._images_q: deque[Ticket] = deque()  # image requests with images not started
        self._text_q: deque[Ticket] = deque()
        self._image_rows = ImageRows(session, max_batch) if self.family == "janus" else None
        self._text_rows = TextRows(session)
        self._flow: FlowRun | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._idle = True
        self._stats = SchedulerStats()

    # --- the front end's side (any thread) ---

    def start(self) -> None:
        with self._cv:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=self._work, name=f"janus-{self.session.name}", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the worker: every queued or running request gets Finished(error=SHUTDOWN)."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        else:
            self._shutdown()

    def submit(self, request: ImageRequest | TextRequest, on_event: Callable[[Event], None]) -> Ticket:
        """Check REQUEST (InputError) and queue it (QueueFull when max_queue are waiting)."""
        checked = check_request(self.session, request, self.vae is not None)
        ticket = Ticket(request, checked, on_event, self._wake)
        with self._cv:
            if self._closing:
                raise JanusError(SHUTDOWN)
            waiting = self._waiting()
            if waiting >= self.max_queue:
                raise QueueFull(
                    f"{waiting} requests are waiting; try again later", self._retry_after(waiting)
                )
            (self._text_q if ticket.kind == "text" else self._images_q).append(ticket)
            self._cv.notify_all()
        return ticket

    def alive(self) -> bool:
        """Whether the worker thread runs (a front end's health check)."""
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> SchedulerStats:
        with self._cv:
            s = SchedulerStats(**vars(self._stats))
            s.queue_depth = self._waiting()
        rows = self._image_rows
        s.active_images = len(self._flow.images) if self._flow else len(rows.images) if rows else 0
        s.active_text_rows = len(self._text_rows.rows)
        return s

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _waiting(self) -> int:
        return sum(not t.started and not t.gone for q in (self._images_q, self._text_q) for t in q)

    def _retry_after(self, waiting: int) -> int:
        s = self._stats
        per_image = s.busy_seconds / s.images_made if s.images_made else 10.0
        return max(1, math.ceil(per_image * (waiting + 1) / self.max_batch))

    # --- the worker ---

    def _busy(self) -> bool:
        rows = self._image_rows
        return bool(
            self._images_q or self._text_q or self._flow or self._text_rows.rows or (rows and rows.rows)
        )

    def _work(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._closing and not self._busy():
                        self._release()
                        self._cv.wait()
                    if self._closing:
                        break
                    self._idle = False
                    gone = [t for q in (self._images_q, self._text_q) for t in q if t.gone]
                    for q in (self._images_q, self._text_q):
                        for t in [t for t in q if t.gone]:
                            q.remove(t)
                    images, texts = self._take_images(), self._take_texts()
                for t in gone:
                    t.finish(cancelled=True)
                start = time.perf_counter()
                try:
                    rows = self._image_step(images) if self.family == "janus" else self._flow_step(images)
                    rows += self._text_step(texts)
                except Exception as e:  # a bug outside one request's work: fail what runs, keep serving
                    log.exception("scheduler step failed")
                    self._fail_running(e, [t for t, _ in images] + texts)
                    rows = 0
                with self._cv:
                    self._stats.busy_seconds += time.perf_counter() - start
                    if rows:
                        self._stats.steps += 1
                        self._stats.rows_last_step = rows
            self._shutdown()

    def _take_images(self) -> list[tuple[Ticket, list[int]]]:
        """Images that start now, FIFO: up to max_batch running (Janus rows; JanusFlow: a new
        batch of one batch_key when none runs)."""
        if self.family == "janus":
            room = self.max_batch - len(self._image_rows.images)
            key = None
        else:
            room = 0 if self._flow else self.max_batch
            key = self._images_q[0].settings.batch_key() if self._images_q else None
        out = []
        for t in list(self._images_q):
            if room <= 0:
                break
            if key is not None and t.settings.batch_key() != key:
                continue
            ks, t.pending = t.pending[:room], t.pending[room:]
            t.started, room = True, room - len(ks)
            out.append((t, ks))
            if not t.pending:
                self._images_q.remove(t)
        return out

    def _take_texts(self) -> list[Ticket]:
        out = []
        while self._text_q and len(self._text_rows.rows) + len(out) < self.max_batch:
            t = self._text_q.popleft()
            t.started = True
            out.append(t)
        return out

    def _image_step(self, admits: list[tuple[Ticket, list[int]]]) -> int:
        """Janus: drop cancelled rows, prefill and join ADMITS, sample, finish, feed."""
        rows = self._image_rows
        self._drop_gone(rows, rows.images, lambda img: img.job)
        for t, ks in admits:
            try:
                rows.join(t, t.ids, ks)
            except Exception as e:  # a bad prefill fails its request only
                t.fail(e)
                self._drop_gone(rows, rows.images, lambda img: img.job)
        if not rows.rows:
            return 0
        stepped = len(rows.rows)
        try:
            complete = rows.step()
            for img in rows.images:
                img.job.emit(ImageStep(img.k, len(img.codes), rows.steps))
            self._stats.image_tokens += len(rows.images)
            for img in complete:
                self._image_done(
                    img.job, img.k, img.job.settings.image_seed(img.k), lambda img=img: rows.decode(img)
                )
            self._drop_gone(rows, rows.images, lambda img: img.job, set(complete))
            if rows.rows:
                rows.forward()
        except Exception as e:  # a shared step failed: its cache cannot be trusted
            for t in rows.jobs():
                t.fail(e)
            rows.release()
        return stepped

    def _image_done(self, t: Ticket, k: int, seed: int, pixels: Callable) -> None:
        if t.gone:
            return
        try:
            t.emit(ImageDone(k, seed, pixels()))
        except Exception as e:  # a failed decode fails its request only
            t.fail(e)
            return
        self._stats.images_made += 1
        t.left -= 1
        if t.left == 0:
            t.finish()

    def _flow_step(self, admits: list[tuple[Ticket, list[int]]]) -> int:
        """JanusFlow: start a batch of ADMITS when none runs, then one Euler step (or decode)."""
        if self._flow is None and admits:
            try:
                self._flow = FlowRun(self.session, self.vae, [(t, k) for t, ks in admits for k in ks])
            except Exception as e:
                for t, _ in admits:
                    t.fail(e)
        run = self._flow
        if run is None:
            return 0
        for t in run.jobs():
            if t.cancelled:
                t.finish(cancelled=True)
        if all(t.gone for t in run.jobs()):  # nobody waits for this batch
            run.close()
            self._flow = None
            return 0
        try:
            event = run.tick()
        except Exception as e:
            for t in run.jobs():
                t.fail(e)
            event = None
        if event is None:
            run.close()
            self._flow = None
            return 0
        kind, value = event
        if kind == "step":
            for t, k in run.images:
                t.emit(ImageStep(k, value, run.steps))
            self._stats.image_tokens += len(run.images)
            return 2 * len(run.images) if run.images[0][0].settings.cfg != 1.0 else len(run.images)
        (t, k), seed, pixels = value
        self._image_done(t, k, seed, lambda: pixels)
        return 0

    def _text_step(self, admits: list[Ticket]) -> int:
        rows = self._text_rows
        self._drop_gone(rows, rows.rows, lambda row: row.job)
        for t in admits:
            try:
                rows.join(t)
            except Exception as e:
                t.fail(e)
        if not rows.rows:
            return 0
        stepped = len(rows.rows)
        try:
            for row, text in rows.step():
                row.job.emit(TextDelta(text))
            self._stats.text_tokens += stepped
            done = [row for row in rows.rows if row.finish]
            for row in done:
                text = self.session.tokenizer.decode(row.tokens)
                row.job.emit(TextDone(text, len(row.tokens), len(row.job.ids), row.finish))
                row.job.finish()
            self._drop_gone(rows, rows.rows, lambda row: row.job, set(done))
            if rows.rows:
                rows.forward()
        except Exception as e:
            for t in rows.jobs():
                t.fail(e)
            rows.release()
        return stepped

    def _drop_gone(self, rows, items, job_of, done: set = frozenset()) -> None:
        """DONE items and those of cancelled or failed requests leave the batch; the cancelled
        get Finished now."""
        leaving = done | {item for item in items if job_of(item).gone}
        for item in leaving:
            if job_of(item).cancelled:
                job_of(item).finish(cancelled=True)
        rows.drop(leaving)

    def _fail_running(self, exc: Exception, admitted: list[Ticket]) -> None:
        running = self._running() + admitted
        if self._flow is not None:
            self._flow.close()
            self._flow = None
        if self._image_rows is not None:
            self._image_rows.release()
        self._text_rows.release()
        for t in running:
            t.fail(exc)

    def _running(self) -> list[Ticket]:
        out = list(self._text_rows.jobs()) + (list(self._image_rows.jobs()) if self._image_rows else [])
        return out + (list(self._flow.jobs()) if self._flow else [])

    def _release(self) -> None:
        """Idle: free the KV caches (called with the lock held, once per idle spell)."""
        if self._idle:
            return
        self._idle = True
        if self._image_rows is not None:
            self._image_rows.release()
        self._text_rows.release()
        self.session.model.language_model.free_cache()

    def _shutdown(self) -> None:
        with self._cv:
            tickets = [t for q in (self._images_q, self._text_q) for t in q]
            self._images_q.clear()
            self._text_q.clear()
        tickets += self._running()
        if self._flow is not None:
            self._flow.close()
            self._flow = None
        for t in tickets:
            t.finish(error=SHUTDOWN)
        self._idle = False
        self._release()
