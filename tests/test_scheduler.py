"""The scheduler: requests that share steps get what they get alone (fp32, tiny checkpoints).

Most tests run images of 100 tokens (a session whose config says so, for the scheduler and the
reference alike) and a stand-in VQ decoder that writes the codes into the pixels; the golden
test runs the real 576 tokens and decoder.
"""

import dataclasses
import threading

import numpy as np
import pytest
import torch
from conftest import FIXTURES, assert_uint8_close, checkpoint_dir, golden_json, golden_tensors, image_path
from PIL import Image

from janus_cli.errors import InputError
from janus_cli.imageio import load_image
from janus_cli.pipelines import flow_run, image_rows
from janus_cli.pipelines import rows as rows_module
from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.events import ImageReady, TextReady
from janus_cli.pipelines.image_to_text import DescribeSettings, reply
from janus_cli.pipelines.images import make_images
from janus_cli.pipelines.scheduler import (
    Finished,
    ImageDone,
    ImageRequest,
    ImageStep,
    QueueFull,
    Scheduler,
    TextDelta,
    TextDone,
    TextRequest,
)
from janus_cli.pipelines.session import open_session
from janus_cli.pipelines.text_to_image import GenerateSettings
from janus_cli.pipelines.text_to_image_flow import FlowSettings
from janus_cli.prompts import understanding_ids

TOKENS = 100  # a 10 x 10 code grid
TIMEOUT = 120
FOX = "a red fox"
WHALE = "a much longer prompt: a blue whale under a stormy sea at night, oil painting"


class ShortConfig:
    """The checkpoint's config with fewer image tokens."""

    def __init__(self, cfg, tokens):
        self._cfg, self.image_tokens = cfg, tokens

    def __getattr__(self, name):
        return getattr(self._cfg, name)


def codes_as_pixels(codes):
    """Stand-in decoder: (1, N) codes -> a (1, 3, 1, N) image whose uint8 pixels are code % 256
    and code // 256 (to_uint8 truncates (x + 1) / 2 * 255, hence the half level)."""
    lo, hi = (codes % 256).float(), (codes // 256).float()
    x = torch.stack([lo, hi, torch.zeros_like(lo)], dim=1)[:, :, None]  # (1, 3, 1, N)
    return (x + 0.5) / 255 * 2 - 1


def pixels_codes(pixels):
    return torch.from_numpy(pixels[0, :, 0].astype(np.int64) + 256 * pixels[0, :, 1].astype(np.int64))


@pytest.fixture(scope="module")
def full():
    return open_session("pro", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cpu"), torch.float32)


@pytest.fixture
def short(full, monkeypatch):
    monkeypatch.setattr(full.model, "decode_codes", codes_as_pixels)
    return dataclasses.replace(full, config=ShortConfig(full.config, TOKENS))


class Events:
    """One request's events; `done` is set on Finished."""

    def __init__(self, then=None):
        self.events, self.done, self.then = [], threading.Event(), then

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, Finished):
            self.done.set()
        if self.then:
            self.then(event)

    def wait(self):
        assert self.done.wait(TIMEOUT), "no Finished in time"
        finished = [e for e in self.events if isinstance(e, Finished)]
        assert len(finished) == 1 and self.events[-1] is finished[0], "Finished must come last, once"
        return finished[0]

    def images(self):
        return {e.index: e for e in self.events if isinstance(e, ImageDone)}


def alone(session, prompt, settings):
    """What `janus generate` makes for PROMPT alone: codes of image k."""
    events = make_images(session, [ImageJob(prompt, settings)], 8)
    return {e.index: pixels_codes(e.pixels) for e in events if isinstance(e, ImageReady)}


@pytest.fixture
def scheduler(short):
    s = Scheduler(short, max_batch=4, max_queue=4)
    s.start()
    yield s
    s.close()


@torch.inference_mode()
def test_row_cache_joins_moves_and_compactions_keep_every_row_as_alone(full, monkeypatch):
    """Rows that join at different slots (one longer than the slot: a shift right), leave
    (the last row moves into the hole) and run out of slots (compaction, growth) compute the
    hidden states they compute alone."""
    monkeypatch.setattr(rows_module, "GROW", 1)  # no spare slots: every join moves or grows
    llm, c = full.model.language_model, full.config.llm.hidden_size
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randn(1, n, c, generator=g) for n in (5, 9, 3, 4)]
    tokens = [torch.randn(n, 1, c, generator=g) for n in (6, 4, 5, 6)]  # fed one at a time
    want = []
    for p, t in zip(prompts, tokens, strict=True):
        llm.setup_cache(rows=1, length=p.shape[1] + len(t))
        n = p.shape[1]
        llm(p, torch.arange(n), used=n)
        want.append(
            [llm(t[i : i + 1][None, 0], torch.tensor([n + i]), used=n + i + 1)[0, -1] for i in range(len(t))]
        )
    cache, rows, fed, got = rows_module.RowCache(llm, rows=1), [], [0] * 4, [[] for _ in range(4)]
    shifts, shift = [], cache._shift
    monkeypatch.setattr(cache, "_shift", lambda delta: shifts.append(delta) or shift(delta))
    for joining, steps in ((0, 3), (1, 2), (2, 1), (None, 1), (3, 9)):
        if joining is not None:
            _, ks, vs = rows_module.prefill(llm, prompts[joining])
            cache.reserve(prompts[joining].shape[1], 1, len(tokens[joining]))
            cache.join(ks, vs, [0], len(tokens[joining]))
            rows.append(joining)
        for _ in range(steps):
            if not rows:
                break
            hidden = cache.step(torch.cat([tokens[r][fed[r]][None] for r in rows]))  # (R, C)
            for r, h in zip(rows, hidden, strict=True):
                got[r].append(h)
                fed[r] += 1
            done = {i for i, r in enumerate(rows) if fed[r] == len(tokens[r])}
            rows = [rows[i] for i in cache.drop(done)]
    assert shifts == [1, -8]  # 9 tokens at slot 8: right; 4 tokens at 13 with 16 slots: compaction
    for r in range(4):
        assert len(got[r]) == len(want[r])
        torch.testing.assert_close(torch.stack(got[r]), torch.stack(want[r]), rtol=1e-5, atol=1e-5)


JOINS = {
    # A keeps running with guidance while B (another prompt length) joins: cfg 5 and cfg 1 share
    "sampled": (
        GenerateSettings(n=2, seed=3, cfg=5.0, temperature=1.0, top_k=50),
        GenerateSettings(n=1, seed=11, cfg=1.0, temperature=1.0, top_k=50),
    ),
    "greedy": (
        GenerateSettings(n=1, seed=0, cfg=5.0, temperature=0.0),
        GenerateSettings(n=2, seed=5, cfg=3.0, temperature=0.0),
    ),
}


@pytest.mark.parametrize("case", JOINS)
def test_a_request_joining_mid_image_gets_what_it_gets_alone(short, scheduler, case):
    sa, sb = JOINS[case]
    wants = [alone(short, FOX, sa), alone(short, WHALE, sb)]  # first: the worker must be alone on the model
    b = Events()

    def join_at_60(event):
        if isinstance(event, ImageStep) and event.index == 0 and event.step == 60:
            tickets.append(scheduler.submit(ImageRequest(WHALE, sb), b))

    a, tickets = Events(join_at_60), []
    scheduler.submit(ImageRequest(FOX, sa), a)
    assert a.wait() == Finished() and b.wait() == Finished()
    steps = [e for e in a.events if isinstance(e, ImageStep) and e.index == 0]
    assert [e.step for e in steps] == list(range(1, TOKENS + 1)) and steps[0].steps == TOKENS
    for prompt, s, got, want in ((FOX, sa, a, wants[0]), (WHALE, sb, b, wants[1])):
        images = got.images()
        assert sorted(images) == list(range(s.n))
        for k, image in images.items():
            assert image.seed == s.seed + k
            assert torch.equal(pixels_codes(image.pixels), want[k]), f"{prompt!r} image {k}"
    assert scheduler.stats().images_made == sa.n + sb.n
    assert scheduler.stats().rows_last_step > 0


def test_greedy_golden_image_and_text_while_it_runs(full, monkeypatch):
    """The golden greedy codes and pixels of `generate`, and the golden answer of `understand`
    asked while the image runs."""
    gj, gt = golden_json("janus-pro-1b-tiny"), golden_tensors("janus-pro-1b-tiny")
    decoded, decode = [], full.model.decode_codes
    monkeypatch.setattr(full.model, "decode_codes", lambda codes: decoded.append(codes) or decode(codes))
    u = gj["understand"]
    question = TextRequest(
        ["<image_placeholder>\n" + u["question"]],
        [load_image(image_path(u["image"]))],
        DescribeSettings(max_tokens=24, temperature=0.0),
    )
    text = Events()
    s = Scheduler(full, max_batch=4)
    s.start()
    try:

        def ask_at_50(event):
            if isinstance(event, ImageStep) and event.index == 0 and event.step == 50:
                s.submit(question, text)

        image = Events(ask_at_50)
        settings = GenerateSettings(n=2, seed=0, cfg=5.0, temperature=0.0)
        s.submit(ImageRequest(gj["generate"]["prompt"], settings), image)
        assert text.wait() == Finished()
        assert not image.done.is_set(), "the answer waited for the image"
        assert image.wait() == Finished()
    finally:
        s.close()
    done = [e for e in text.events if isinstance(e, TextDone)]
    assert len(done) == 1 and done[0].text == u["greedy_text"]
    assert "".join(e.text for e in text.events if isinstance(e, TextDelta)) == u["greedy_text"]
    assert done[0].tokens == len(u["greedy_ids"]) and done[0].prompt_tokens == len(u["input_ids"])
    assert done[0].finish_reason == "length"
    assert torch.equal(torch.cat(decoded), gt["generate.greedy_codes"])
    golden = torch.from_numpy(np.array(Image.open(FIXTURES / "goldens" / "janus-pro-1b-tiny.greedy0.png")))
    for k in (0, 1):
        assert_uint8_close(torch.from_numpy(image.images()[k].pixels), golden)


def test_answers_joining_each_other_are_replys_answers(short, scheduler):
    """Sampled answers (temperature, top_p, their own seeds) that join the running answers at
    different slots stream what `reply` gives alone; system "" drops the system prompt."""
    tok = short.tokenizer
    story = ["Tell me a story."]
    asks = [
        TextRequest(story, settings=DescribeSettings(max_tokens=12, temperature=1.0, seed=7)),
        TextRequest(
            ["hi", "hello", "and then?"],
            settings=DescribeSettings(max_tokens=9, temperature=0.8, top_p=0.9, seed=3),
        ),
        TextRequest(story, settings=DescribeSettings(max_tokens=5), system=""),
    ]
    wants = [
        [e.text for e in reply(short, a.messages, a.images, a.settings) if isinstance(e, TextReady)]
        for a in asks
    ]
    later, joined = [Events(), Events()], []

    def join_later(event):
        if isinstance(event, TextDelta) and not joined:
            joined.append(True)
            for ask, events in zip(asks[1:], later, strict=True):
                scheduler.submit(ask, events)

    first = Events(join_later)
    scheduler.submit(asks[0], first)
    assert [e.wait() for e in (first, *later)] == [Finished()] * 3
    for i, events in enumerate((first, *later)):
        (done,) = [e for e in events.events if isinstance(e, TextDone)]
        assert "".join(e.text for e in events.events if isinstance(e, TextDelta)) == done.text
        if i < 2:
            assert [done.text] == wants[i]
            system = None
        else:
            system = ""
        ids = understanding_ids(tok, asks[i].messages, 576, *([] if system is None else [system]))
        assert done.prompt_tokens == len(ids)
        assert done.finish_reason == ("length" if done.tokens == asks[i].settings.max_tokens else "stop")
    assert later[1].events[-2].prompt_tokens < first.events[-2].prompt_tokens  # no system prompt


def test_cancel_mid_image_leaves_within_a_step_and_the_other_finishes(short, scheduler):
    settings = GenerateSettings(n=1, seed=4, cfg=5.0, temperature=1.0, top_k=50)
    want = alone(short, WHALE, settings)[0]
    after, cancelled, mine = [], [], []

    def cancel_at_30(event):
        if cancelled:
            after.append(event)
        elif isinstance(event, ImageStep) and event.step == 30:
            cancelled.append(mine[0].cancel())

    a, b = Events(cancel_at_30), Events()
    ticket = scheduler.submit(ImageRequest(FOX, settings), a)
    mine.append(ticket)
    scheduler.submit(ImageRequest(WHALE, settings), b)
    assert a.wait() == Finished(cancelled=True)
    assert after == [Finished(cancelled=True)], "one more step at most, then Finished"
    assert b.wait() == Finished()
    assert torch.equal(pixels_codes(b.images()[0].pixels), want)
    ticket.cancel()  # a no-op once finished
    assert a.events.count(Finished(cancelled=True)) == 1


def test_queue_full_bad_input_and_shutdown(short):
    s = Scheduler(short, max_batch=2, max_queue=2)  # not started: everything waits
    waiting = [Events(), Events()]
    tickets = [s.submit(ImageRequest(FOX, GenerateSettings()), e) for e in waiting]
    with pytest.raises(QueueFull) as full:
        s.submit(ImageRequest(FOX, GenerateSettings()), Events())
    assert full.value.retry_after >= 1 and full.value.exit_code == 2
    assert s.stats().queue_depth == 2
    tickets[1].cancel()  # a cancelled request no longer counts as waiting
    assert s.stats().queue_depth == 1
    never = Events()
    bad = [
        ImageRequest(FOX, FlowSettings()),  # a Janus model takes GenerateSettings
        ImageRequest(FOX, GenerateSettings(n=0)),
        ImageRequest("fox " * 5000, GenerateSettings()),  # longer than the context
        ImageRequest(FOX, GenerateSettings(temperature=-1.0)),
        TextRequest(["<image_placeholder> what is this?"], []),  # a tag without its image
        TextRequest(["hi", "hello"]),  # ends with the assistant's turn
        TextRequest(["hi"], settings=DescribeSettings(max_tokens=0)),
    ]
    for request in bad:
        with pytest.raises(InputError):
            s.submit(request, never)
    assert never.events == []
    s.close()
    assert waiting[0].wait() == Finished(error="server shutting down")
    assert waiting[1].wait().cancelled or waiting[1].events[-1].error


def test_a_failing_step_fails_its_request_only(short, scheduler, monkeypatch):
    calls = []

    def decode_once_broken(codes):
        calls.append(codes)
        if len(calls) == 1:
            raise RuntimeError("decoder broke")
        return codes_as_pixels(codes)

    settings = GenerateSettings(n=1, seed=2, cfg=5.0, temperature=0.0)
    want = alone(short, FOX, settings)[0]
    monkeypatch.setattr(short.model, "decode_codes", decode_once_broken)
    a, b = Events(), Events()
    scheduler.submit(ImageRequest(FOX, settings), a)
    scheduler.submit(ImageRequest(WHALE, dataclasses.replace(settings, seed=1)), b)
    assert a.wait() == Finished(error="decoder broke") and not a.images()
    assert b.wait() == Finished() and list(b.images()) == [0]

    # a shared forward that fails fails what runs; the worker serves the next request
    broken = image_rows.ImageRows.forward

    def forward_once_broken(self):
        monkeypatch.setattr(image_rows.ImageRows, "forward", broken)
        raise RuntimeError("forward broke")

    monkeypatch.setattr(image_rows.ImageRows, "forward", forward_once_broken)
    c = Events()
    scheduler.submit(ImageRequest(FOX, settings), c)
    assert c.wait() == Finished(error="forward broke")

    def raises(event):
        raise ValueError("a client went away")

    d, e = Events(raises), Events()  # a callback that raises cancels its own request
    scheduler.submit(ImageRequest(FOX, settings), d)
    scheduler.submit(ImageRequest(FOX, settings), e)
    assert d.wait() == Finished(cancelled=True)
    assert e.wait() == Finished()
    assert torch.equal(pixels_codes(e.images()[0].pixels), want)


@pytest.fixture(scope="module")
def flow():
    from janus_cli.checkpoints.vae import load_vae

    name = "janusflow-1.3b-tiny"
    session = open_session("flow", checkpoint_dir(name), torch.device("cpu"), torch.float32)
    return session, load_vae(checkpoint_dir(f"{name}-vae"), dtype=torch.float32)


def test_janusflow_requests_queued_together_share_a_batch(flow, monkeypatch):
    """Two requests queued together run as one batch and get make_images' images (the
    VAE is a stand-in that shows the latents); a question on JanusFlow gets the golden answer."""
    session, vae = flow
    monkeypatch.setattr(vae, "decode", lambda latent: latent[:, :3].float().clamp(-1, 1))  # (1, 3, 48, 48)
    batches, run = [], flow_run.generate_flow_batch
    monkeypatch.setattr(
        flow_run, "generate_flow_batch", lambda s, v, batch: batches.append(len(batch)) or run(s, v, batch)
    )
    jobs = [
        ImageJob(FOX, FlowSettings(n=1, seed=3, steps=1, cfg=2.0)),
        ImageJob(WHALE, FlowSettings(n=1, seed=5, steps=1, cfg=2.0, noise="official")),
    ]
    want = [e for e in make_images(session, jobs, 4, vae=vae) if isinstance(e, ImageReady)]
    u = golden_json("janusflow-1.3b-tiny")["understand"]
    question = TextRequest(
        ["<image_placeholder>\n" + u["question"]],
        [load_image(image_path(u["image"]))],
        DescribeSettings(max_tokens=24),
    )
    s = Scheduler(session, vae, max_batch=4)
    got = [Events() for _ in jobs]
    for job, events in zip(jobs, got, strict=True):
        s.submit(ImageRequest(job.prompt, job.settings), events)
    text = Events()
    s.submit(question, text)
    with pytest.raises(InputError):
        s.submit(ImageRequest(FOX, GenerateSettings()), text)  # JanusFlow takes FlowSettings
    s.start()
    try:
        assert [e.wait() for e in got] == [Finished(), Finished()] and text.wait() == Finished()
    finally:
        s.close()
    assert batches == [2]  # one batch
    for events, ref in zip(got, want, strict=True):
        image = events.images()[0]
        assert image.seed == ref.seed and np.array_equal(image.pixels, ref.pixels)
        assert [e.step for e in events.events if isinstance(e, ImageStep)] == [1]
    assert [e.text for e in text.events if isinstance(e, TextDone)] == [u["greedy_text"]]
