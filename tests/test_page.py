"""The page `janus serve` hands out at /, driven in a real headless Chromium (Debian's `chromium`;
`.ci/run` installs it) against a real `janus serve` on the tiny Janus-Pro and JanusFlow fixtures.

One server (with --api-key) and one page for the whole module, used in file order as a person
would: the key, generate, cancel, JanusFlow, chat, the details (errors, phone width, colours).
Every console error or uncaught exception on any page fails the test that was running, except
the failed loads a test provokes on purpose (`console.expect`). Few full 576-token images are
made (they dominate the run time on a shared CPU): the page's n=2, the API's n=2 to compare,
and one "again with this seed"; the rest is cancelled early or uses JanusFlow with 3 steps.

Screenshots of both tabs are taken into tmp (they must render); with JANUS_UPDATE_SCREENSHOTS=1
they are also written to docs/screenshot-{generate,chat}.png (each must stay under 200 KB).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
np = pytest.importorskip("numpy")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
from PIL import Image  # noqa: E402

from tests.conftest import checkpoint_dir, golden_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "tests" / "fixtures" / "images"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL, FLOW = "janus-pro-1b-tiny", "janusflow-1.3b-tiny"
PROMPT = "a red fox in the snow"
KEY = "page-test-key"
WAIT = 90_000  # ms: the longest any one step may take on a busy 2-core machine

sync_api.expect.set_options(timeout=WAIT)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


# ---------------------------------------------------------------------------------------------
# A real server, a real browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(*args: str):
    """`janus serve ARGS` on a free loopback port, in float32 on the CPU; yields its base URL.
    Its stderr goes to a file (a pipe nobody reads could fill and stall it), shown if it fails."""
    port = free_port()
    runtime = ["--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port)]
    cmd = [sys.executable, "-m", "janus_cli", "serve", *args, *runtime]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JANUS_API_KEY", None)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)

        def said() -> str:
            log.seek(0)
            return log.read()[-2000:]

        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, f"janus serve exited {proc.returncode}: {said()}"
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"janus serve did not become healthy in 180 s: {said()}"
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Console:
    """Console errors and uncaught exceptions of every page; a test may expect some by pattern."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern] = []

    def watch(self, page) -> None:
        page.on("console", lambda m: m.type == "error" and self._error(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._error(f"pageerror: {e}"))

    def _error(self, text: str) -> None:
        if not any(p.search(text) for p in self.allowed):
            self.errors.append(text)

    @contextmanager
    def expect(self, pattern: str):
        """Allow console errors matching PATTERN (a failed load the test provokes) inside the block."""
        self.allowed.append(re.compile(pattern))
        try:
            yield
        finally:
            self.allowed.pop()

    def check(self) -> None:
        errors, self.errors = self.errors, []
        assert not errors, errors


@pytest.fixture(scope="module")
def server():
    """Janus-Pro and JanusFlow (the page shows each its own settings)."""
    flow = [str(checkpoint_dir(FLOW)), "--vae", str(checkpoint_dir(f"{FLOW}-vae"))]
    with serve("-m", str(checkpoint_dir(MODEL)), "-m", *flow, "--api-key", KEY) as base:
        yield base


@pytest.fixture(scope="module")
def names(server) -> dict[str, str]:
    """The served model ids by family, from /v1/models."""
    models = httpx.get(server + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return {m["family"]: m["id"] for m in models.json()["data"]}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console():
    return Console()


@pytest.fixture(scope="module")
def page(browser, server, console):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    console.watch(page)
    yield page  # the first test opens it
    context.close()


@pytest.fixture(autouse=True)
def no_console_errors(request, console):
    yield
    console.check()


# ---------------------------------------------------------------------------------------------
# Helpers


def pixels(data_url: str) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of a data:image/png;base64 URL (what an <img> shows)."""
    head, b64 = data_url.split(",", 1)
    assert head == "data:image/png;base64", head
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def png_recipe(data_url: str) -> dict:
    """The recipe a PNG made by the server carries (its "janus-cli" text chunk)."""
    return json.loads(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).info["janus-cli"])


def gallery_srcs(page) -> list[str]:
    return page.locator("#gallery img").evaluate_all("imgs => imgs.map(i => i.src)")


def bar_values(page) -> list[tuple[float, float]]:
    return page.locator("#progress progress").evaluate_all("bs => bs.map(b => [b.value, b.max])")


def watch_bars(page, until, timeout=WAIT / 1000) -> list[list[tuple[float, float]]]:
    """Samples of the progress bars until UNTIL() holds (bounded in time)."""
    samples, deadline = [], time.monotonic() + timeout
    while not until():
        samples.append(bar_values(page))
        assert time.monotonic() < deadline, f"timed out; bars {samples[-3:]}"
        page.wait_for_timeout(100)
    return samples


def snap(page, name: str, tmp_path: Path) -> None:
    """A screenshot into tmp that must render; into docs/ too when JANUS_UPDATE_SCREENSHOTS=1."""
    shot = tmp_path / f"screenshot-{name}.png"
    page.screenshot(path=str(shot))
    image = Image.open(shot)
    assert image.size == (1000, 800)
    assert len(np.unique(np.asarray(image.convert("L")))) > 16, "the screenshot is blank"
    if os.environ.get("JANUS_UPDATE_SCREENSHOTS") == "1":
        out = ROOT / "docs" / f"screenshot-{name}.png"
        out.parent.mkdir(exist_ok=True)
        image.convert("RGB").save(out, optimize=True)
        assert out.stat().st_size < 200_000, f"{out} is {out.stat().st_size} bytes"


# ---------------------------------------------------------------------------------------------
# The key, then Generate


def test_without_the_key_the_page_says_so_and_keeps_it_once_given(page, server, console):
    expect = sync_api.expect
    with console.expect(r"status of 401"):
        page.goto(server + "/")  # the page itself needs no key
        key_error = page.locator("#api-key + output.error")
        expect(key_error).to_contain_text("needs an API key")
        page.get_by_label("Prompt").fill(PROMPT)
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#generate-error")).to_contain_text("needs an API key")
        expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#gallery li")).to_have_count(0)

    page.get_by_label("API key").fill(KEY)
    page.get_by_label("API key").press("Enter")  # lists the models with it
    expect(page.locator("#model option")).to_have_count(2)
    expect(key_error).to_be_empty()

    # Kept in localStorage: a reload lists the models with it (the generations below use it).
    page.reload()
    expect(page.get_by_label("API key")).to_have_value(KEY)
    expect(page.locator("#model option")).to_have_count(2)


def test_generate_streams_bars_and_images_equal_to_the_api(page, server, names):
    assert page.get_by_role("tab", name="Generate").get_attribute("aria-selected") == "true"
    assert page.get_by_role("tabpanel", name="Generate").is_visible()
    assert not page.get_by_role("tabpanel", name="Chat").is_visible()
    expect = sync_api.expect
    model = names["janus"]  # served first, so picked first
    expect(page.get_by_label("Model")).to_have_value(model)
    expect(page.get_by_label("Steps")).to_be_hidden()  # a JanusFlow setting

    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Images", exact=True).fill("2")
    page.get_by_label("Seed", exact=True).fill("0")
    page.get_by_label("Temperature", exact=True).fill("0")
    page.get_by_role("button", name="Generate").click()
    samples = watch_bars(page, lambda: len(gallery_srcs(page)) == 2)

    # Two bars, each seen part-way and moving forward, never backward.
    assert {len(s) for s in samples if s} == {2}
    for k in range(2):
        seen = [s[k][0] for s in samples if s]
        assert any(0 < v < 576 for v in seen), seen
        assert seen == sorted(seen) and len(set(seen)) > 2, seen
    expect(page.locator("#seed-used")).to_have_text("used 0–1")

    # The pixels the page shows are those the API gives any client for the same request.
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY)
    made = client.images.generate(model=model, prompt=PROMPT, n=2, extra_body={"seed": 0, "temperature": 0})
    want = {d.seed: pixels("data:image/png;base64," + d.b64_json) for d in made.data}
    items = page.locator("#gallery li")
    shown = {}
    for k in range(2):
        item = items.nth(k)
        seed = int(re.search(r"seed (\d+)", item.locator("summary").inner_text()).group(1))
        shown[seed] = pixels(item.locator("img").get_attribute("src"))
    assert sorted(shown) == [0, 1]
    for seed in (0, 1):
        assert np.array_equal(shown[seed], want[seed]), (
            f"seed {seed}: the page's image differs from the API's"
        )

    # Recipe on hover (title) and on click (details); download = the PNG, which carries its recipe.
    first = items.nth(0)
    assert f"prompt: {PROMPT}" in first.locator("img").get_attribute("title")
    first.locator("summary").click()
    expect(first.locator("details")).to_have_attribute("open", "")
    expect(first.locator("dl")).to_contain_text("temperature")
    link = first.get_by_role("link", name="Download")
    assert link.get_attribute("href") == first.locator("img").get_attribute("src")
    assert re.fullmatch(r"a-red-fox-in-the-snow-\d+\.png", link.get_attribute("download"))
    recipe = png_recipe(link.get_attribute("href"))
    assert (recipe["prompt"], recipe["temperature"], recipe["cfg"]) == (PROMPT, 0, 5), recipe


def test_a_thumbnail_opens_its_image_full_size(page):
    """The gallery's thumbnails are 384-pixel images shrunk to fit; Enter (or a click) on one
    shows it at its natural size in a modal dialog, and Escape (or a click) closes it."""
    expect = sync_api.expect
    thumb = page.locator("#gallery li").first.get_by_role("button", name=f"View full size: {PROMPT}")
    viewer, full = page.get_by_role("dialog", name="Full-size image"), page.locator("#viewer-image")
    width = "e => Math.round(e.getBoundingClientRect().width)"
    assert thumb.locator("img").evaluate(width) < 384  # a thumbnail
    expect(viewer).to_be_hidden()

    thumb.focus()
    page.keyboard.press("Enter")
    expect(viewer).to_be_visible()
    assert full.get_attribute("src") == thumb.locator("img").get_attribute("src")
    assert full.evaluate("e => [e.naturalWidth, e.naturalHeight]") == [384, 384]
    assert full.evaluate(width) == 384  # shown at its natural size
    assert page.evaluate("document.activeElement.closest('dialog')?.id") == "viewer"  # focus inside
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(thumb).to_be_focused()  # back where the person was

    thumb.click()
    expect(viewer).to_be_visible()
    full.click()
    expect(viewer).to_be_hidden()
    page.get_by_role("button", name="View full size").first.click()
    page.mouse.click(5, 5)  # the backdrop
    expect(viewer).to_be_hidden()


def test_cancel_stops_the_bars_then_again_and_vary_seed(page, tmp_path):
    expect = sync_api.expect
    items = page.locator("#gallery li")
    page.get_by_label("Images", exact=True).fill("2")
    page.get_by_label("Seed", exact=True).fill("7")
    page.get_by_role("button", name="Generate").click()
    watch_bars(page, lambda: any(v >= 40 for v, _ in bar_values(page)))
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#generate-status")).to_have_text("Cancelled.")
    stopped = bar_values(page)
    assert len(stopped) == 2 and all(v < m for v, m in stopped), stopped
    page.wait_for_timeout(1500)
    assert bar_values(page) == stopped
    assert items.count() == 2
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()

    # The next Generate works: "Again with this seed" re-makes image 1 alone (the same pixels,
    # within the one level of batched decoding), newest first in the gallery.
    item1 = items.filter(has=page.locator("summary", has_text="seed 1")).first
    before = pixels(item1.locator("img").get_attribute("src"))
    item1.get_by_role("button", name="Again with this seed").click()
    expect(items).to_have_count(3)
    expect(items.first.locator("summary")).to_have_text("Recipe (seed 1)")
    again = pixels(items.first.locator("img").get_attribute("src"))
    assert np.abs(again.astype(int) - before.astype(int)).max() <= 1
    expect(page.get_by_label("Images", exact=True)).to_have_value("1")
    expect(page.locator("#seed-used")).to_have_text("used 1")
    snap(page, "generate", tmp_path)

    # "Vary seed" sends the same recipe without a seed (the server picks one; cancelled here).
    with page.expect_request(lambda r: r.url.endswith("/v1/images/generations")) as sent:
        items.first.get_by_role("button", name="Vary seed").click()
    body = sent.value.post_data_json
    assert "seed" not in body and body["prompt"] == PROMPT and body["n"] == 1 and body["temperature"] == 0
    expect(page.get_by_label("Seed", exact=True)).to_have_value("")
    watch_bars(page, lambda: any(v > 0 for v, _ in bar_values(page)))
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#generate-status")).to_have_text("Cancelled.")
    assert items.count() == 3


def test_janusflow_shows_its_own_settings(page, names):
    expect = sync_api.expect
    page.get_by_label("Model").select_option(names["janusflow"])
    expect(page.get_by_label("Steps")).to_be_visible()
    expect(page.get_by_label("Noise")).to_be_visible()
    expect(page.get_by_label("Temperature", exact=True)).to_be_hidden()
    expect(page.get_by_label("CFG")).to_have_value("2")  # JanusFlow's default, Janus's is 5
    page.get_by_label("Steps").fill("3")
    page.get_by_label("Seed", exact=True).fill("4")
    items = page.locator("#gallery li")
    before = items.count()
    page.get_by_role("button", name="Generate").click()
    expect(items).to_have_count(before + 1)
    expect(items.first.locator("dl")).to_contain_text("steps3")
    # The PNG's recipe is the server's: the model it ran and the steps it took.
    recipe = png_recipe(items.first.locator("img").get_attribute("src"))
    assert FLOW in recipe["model"] and (recipe["steps"], recipe["seed"], recipe["noise"]) == (
        3,
        4,
        "per-image",
    )

    page.get_by_label("Model").select_option(names["janus"])
    expect(page.get_by_label("Temperature", exact=True)).to_be_visible()
    expect(page.get_by_label("Steps")).to_be_hidden()
    expect(page.get_by_label("CFG")).to_have_value("5")


# ---------------------------------------------------------------------------------------------
# Chat


DROP = """async ([b64, how]) => {
  // A File as a drag-and-drop or a paste would bring it.
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "image.png", { type: "image/png" }));
  const init = { bubbles: true, cancelable: true };
  const $ = (id) => document.getElementById(id);
  if (how === "drop") $("panel-chat").dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: data }));
  else $("message").dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: data }));
}"""


def test_chat_streams_the_golden_answer_then_a_second_turn(page, names, tmp_path):
    expect = sync_api.expect
    golden = golden_json(MODEL)["understand"]
    page.get_by_role("tab", name="Chat").click()
    expect(page.get_by_role("tabpanel", name="Chat")).to_be_visible()
    assert not page.get_by_role("tabpanel", name="Generate").is_visible()

    page.get_by_label("Attach images").set_input_files(str(IMAGES / golden["image"]))
    expect(page.locator("#attachments img")).to_have_count(1)
    page.get_by_label("Chat temperature").fill("0")
    page.get_by_label("Max tokens").fill("24")
    message = page.get_by_label("Message")
    message.fill("")
    message.press_sequentially("one")
    message.press("Shift+Enter")
    message.press_sequentially("two")
    expect(message).to_have_value("one\ntwo")  # Shift+Enter is a new line, nothing sent
    expect(page.locator("#conversation li")).to_have_count(0)

    # Count the answer's updates: streamed means several, not one at the end.
    message.fill(golden["question"])
    page.evaluate("""() => { window.updates = 0; new MutationObserver((records) => {
        for (const r of records) if (r.target.matches?.("li.assistant .text")) window.updates++;
      }).observe(document.getElementById("conversation"), {subtree: true, childList: true}); }""")
    message.press("Enter")
    answer = page.locator("#conversation li.assistant").last
    expect(answer).to_have_attribute("data-done", "true")
    assert answer.locator(".text").inner_text() == golden["greedy_text"]
    assert page.evaluate("window.updates") >= 2
    user = page.locator("#conversation li.user").last
    expect(user.locator("img")).to_have_count(1)  # the image inline in the conversation
    assert user.locator(".text").inner_text() == golden["question"]
    expect(message).to_have_value("")
    expect(page.locator("#attachments img")).to_have_count(0)

    # Second turn: two images, one dropped and one pasted.
    for name, how in (("portrait0.png", "drop"), ("grey0.png", "paste")):
        page.evaluate(DROP, [base64.b64encode((IMAGES / name).read_bytes()).decode(), how])
    expect(page.locator("#attachments img")).to_have_count(2)
    message.fill("And these two?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#conversation li")).to_have_count(4)
    answer = page.locator("#conversation li.assistant").last
    expect(answer).to_have_attribute("data-done", "true")
    assert answer.locator(".text").inner_text().strip()
    expect(page.locator("#conversation li.user").last.locator("img")).to_have_count(2)
    snap(page, "chat", tmp_path)

    # Imagine: the message text becomes an image in the conversation (made by the chosen model,
    # here JanusFlow with the Generate tab's 3 steps, to keep the test short), then can be asked about.
    page.get_by_label("Model").select_option(names["janusflow"])
    message.fill("a small red boat")
    page.get_by_role("button", name="Imagine").click()
    made = page.locator("#conversation li.assistant").last
    expect(made).to_have_attribute("data-done", "true")
    expect(made.locator("img")).to_have_count(1)
    assert made.locator("img").get_attribute("src").startswith("data:image/png;base64,")
    expect(made).to_contain_text("seed ")
    expect(page.locator("#gallery li").first.locator("img")).to_have_attribute("alt", "a small red boat")
    made.get_by_role("button", name="Ask about this image").click()
    expect(page.locator("#attachments img")).to_have_count(1)
    page.get_by_label("Model").select_option(names["janus"])

    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#conversation li")).to_have_count(0)
    expect(page.locator("#attachments img")).to_have_count(0)

    # Stop (in a new, text-only chat: a short prefill): the answer so far stays, Send comes back.
    page.get_by_label("Max tokens").fill("2000")
    message.fill("Tell me more.")
    message.press("Enter")
    answer = page.locator("#conversation li.assistant").last
    expect(answer.locator(".text")).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-done", "stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


# ---------------------------------------------------------------------------------------------
# Details: errors beside their control, phone width, light and dark


def test_errors_show_beside_the_control_that_caused_them(page, console):
    expect = sync_api.expect
    page.get_by_role("button", name="Send").click()  # nothing to send
    expect(page.locator("#message + output.error")).to_contain_text("Write a message")
    expect(page.get_by_label("Message")).to_have_attribute("aria-invalid", "true")

    page.get_by_role("tab", name="Generate").click()
    page.get_by_label("Prompt").fill("")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#prompt + output.error")).to_have_text("Write a prompt first.")

    # A server refusal (a 400 naming the field) lands beside that field.
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("CFG").fill("-1")
    with console.expect(r"status of 400"):
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#cfg + output.error")).to_contain_text("cfg")
    expect(page.get_by_label("CFG")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#generate-error")).to_be_empty()
    page.get_by_label("CFG").fill("5")


def test_phone_width_has_no_horizontal_scroll(page):
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        for tab in ("Generate", "Chat"):
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(100)
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{tab}: {width}"
    finally:
        page.set_viewport_size({"width": 1000, "height": 800})
        page.get_by_role("tab", name="Generate").click()


def test_light_and_dark_follow_the_system(browser, server, console):
    colours = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        console.watch(page)
        with console.expect(r"status of 401"):  # a fresh browser holds no key
            page.goto(server + "/")
            sync_api.expect(page.locator("#api-key + output.error")).not_to_be_empty()
        colours[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        context.close()
    assert colours["light"] != colours["dark"], colours
