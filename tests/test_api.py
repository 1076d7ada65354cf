"""The Python API (`janus_cli.load` and friends): the goldens, the CLI's outputs, cancel, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import assert_uint8_close, checkpoint_dir, golden_json, golden_tensors, image_path
from conftest import run_janus as run
from PIL import Image

import janus_cli

FAMILIES = ["janus-1.3b-tiny", "janus-pro-1b-tiny"]


def load(name: str):
    return janus_cli.load(str(checkpoint_dir(name)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def pro():
    return load("janus-pro-1b-tiny")


def test_import_loads_no_torch():
    code = "import sys, janus_cli; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_api_reproduces_the_goldens_and_the_command_line(name, tmp_path):
    m = load(name)
    assert m.family == "janus"
    u, g = golden_json(name)["understand"], golden_json(name)["generate"]
    text = m.describe(image_path(u["image"]), u["question"], temperature=0, max_tokens=24)
    assert text == u["greedy_text"]
    images = m.generate(g["prompt"], temperature=0, seed=0)
    assert [(i.index, i.seed) for i in images] == [(0, 0)]
    golden = golden_tensors(name)["generate.greedy_images_uint8"][0]
    assert_uint8_close(torch.from_numpy(np.array(images[0].image)), golden)

    model = str(checkpoint_dir(name))
    r = run(
        "generate",
        g["prompt"],
        "-m",
        model,
        "--temperature",
        "0",
        "--seed",
        "0",
        "-o",
        str(tmp_path),
        "--dtype",
        "float32",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    cli = Image.open(r.stdout.strip())
    assert np.array_equal(np.array(cli.convert("RGB")), np.array(images[0].image))
    saved = images[0].save(tmp_path / "api.png")
    api_recipe, cli_recipe = (
        json.loads(Image.open(saved).info["janus-cli"]),
        json.loads(cli.info["janus-cli"]),
    )
    assert api_recipe == cli_recipe  # the same recipe, key for key
    r = run(
        "describe",
        str(image_path(u["image"])),
        "-p",
        u["question"],
        "-m",
        model,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        "--dtype",
        "float32",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == text


@pytest.mark.slow
def test_api_reproduces_the_janusflow_goldens_and_the_command_line(tmp_path):
    name = "janusflow-1.3b-tiny"
    m = janus_cli.load(
        str(checkpoint_dir(name)), device="cpu", dtype="float32", vae=str(checkpoint_dir(f"{name}-vae"))
    )
    assert m.family == "janusflow"
    u, g = golden_json(name)["understand"], golden_json(name)["generate"]
    assert m.describe(image_path(u["image"]), u["question"], max_tokens=24) == u["greedy_text"]
    with pytest.raises(janus_cli.JanusError, match="temperature does not apply"):
        m.generate("a fox", temperature=0)
    images = m.generate(g["prompt"], n=2, steps=5, cfg=2, seed=12345, noise="official")
    golden = golden_tensors(name)["generate.images_uint8_5_steps"]
    for img, expected in zip(images, golden, strict=True):
        assert_uint8_close(torch.from_numpy(np.array(img.image)), expected)
    r = run(
        "flow-generate",
        g["prompt"],
        "-m",
        str(checkpoint_dir(name)),
        "--vae",
        str(checkpoint_dir(f"{name}-vae")),
        "-n",
        "2",
        "--steps",
        "5",
        "--cfg",
        "2",
        "--seed",
        "12345",
        "--noise",
        "official",
        "-o",
        str(tmp_path),
        "--dtype",
        "float32",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    for path, img in zip(r.stdout.splitlines(), images, strict=True):
        assert np.array_equal(np.array(Image.open(path).convert("RGB")), np.array(img.image))


def test_image_k_is_the_same_whatever_n_and_batch_size(pro):
    pro.session.model.decode_codes = lambda codes: (
        torch.zeros(len(codes), 3, 8, 8) + codes.float().mean() / 16384
    )  # cheap stand-in
    try:
        three = pro.generate("a red fox", n=3, seed=7, top_k=50, batch_size=2)
        alone = pro.generate("a red fox", n=1, seed=9, top_k=50)
    finally:
        del pro.session.model.decode_codes
    assert [i.seed for i in three] == [7, 8, 9] and [i.index for i in three] == [0, 1, 2]
    assert np.array_equal(np.array(three[2].image), np.array(alone[0].image))
    assert (
        three[0].recipe["seed"] == 7
        and three[0].recipe["top_k"] == 50
        and three[0].recipe["prompt"] == "a red fox"
    )


def test_cancel_stops_within_a_step_and_the_next_call_is_unchanged(pro):
    pro.session.model.decode_codes = lambda codes: (
        torch.zeros(len(codes), 3, 8, 8) + codes.float().mean() / 16384
    )
    try:
        cancel, steps = threading.Event(), []

        def on_step(done, total):
            steps.append(done)
            if done >= 10:  # 5 token steps of 2 images
                cancel.set()

        with pytest.raises(janus_cli.Cancelled):
            pro.generate("a red fox", n=2, seed=3, on_step=on_step, cancel=cancel)
        assert steps[-1] == 10  # stopped at the step it was set
        assert (
            pro.session.model.language_model.model.layers[0].self_attn.cache is None
        )  # the KV cache is freed
        again = pro.generate("a red fox", n=2, seed=3)
        fresh = load("janus-pro-1b-tiny")
        fresh.session.model.decode_codes = pro.session.model.decode_codes
        expected = fresh.generate("a red fox", n=2, seed=3)
    finally:
        del pro.session.model.decode_codes
    assert [np.array(i.image).tolist() for i in again] == [np.array(i.image).tolist() for i in expected]


def test_errors_are_janus_errors_with_the_cli_messages(pro):
    with pytest.raises(janus_cli.JanusError, match="steps does not apply"):
        pro.generate("a fox", steps=3)
    with pytest.raises(janus_cli.JanusError, match="top_p must be in"):
        pro.generate("a fox", top_p=2.0)
    with pytest.raises(janus_cli.JanusError, match="at most .* fit with the image"):
        pro.generate("word " * 5000)
    with pytest.raises(janus_cli.JanusError, match="no such file"):
        pro.describe("/no/such.png")
    with pytest.raises(janus_cli.JanusError, match="--device cuda"):
        janus_cli.load(
            str(checkpoint_dir("janus-pro-1b-tiny")),
            device="cuda" if not torch.cuda.is_available() else "nope",
        )


def test_saving_never_overwrites_unless_asked(pro, tmp_path):
    img = janus_cli.GeneratedImage(Image.new("RGB", (4, 4)), "p", 1, 0, {"prompt": "p", "seed": 1})
    path = img.save(tmp_path / "a.png")
    with pytest.raises(janus_cli.JanusError, match="exists"):
        img.save(path)
    img.save(path, overwrite=True)
    assert json.loads(Image.open(path).info["janus-cli"]) == {"prompt": "p", "seed": 1}


@pytest.mark.slow
def test_chat_turns_images_and_reset(pro):
    u = golden_json("janus-pro-1b-tiny")["understand"]
    chat = pro.chat([image_path(u["image"])], max_tokens=24)
    assert chat.ask(u["question"]) == u["greedy_text"]
    second = "".join(chat.stream("And this one?", images=[image_path("portrait0.png")]))
    assert second and [h["role"] for h in chat.history] == ["user", "assistant", "user", "assistant"]
    assert chat.history[2]["images"] == 1
    chat.reset()
    assert chat.history == []
    abandoned = chat.stream("What is it?", images=[image_path(u["image"])])
    next(abandoned)
    abandoned.close()  # an abandoned turn leaves the conversation as it was
    assert chat.history == []
