"""bf16 on CUDA, as `janus` runs by default on a GPU: the tiny fixtures make finite logits,
images that decode, non-empty answers, the same image twice from one seed, and the int8 and
int4 paths run. bf16 has no golden to hold to (the goldens are fp32), so these are sanity checks; the fp32
goldens themselves run on CUDA through JANUS_TEST_DEVICE=cuda (conftest.test_device).

Skipped unless JANUS_TEST_DEVICE=cuda and a CUDA device is present (benchmarks/device_check.sh).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import checkpoint_dir, image_path

from janus_cli.checkpoints.vae import load_vae
from janus_cli.imageio import load_image
from janus_cli.models.int4 import Int4Linear
from janus_cli.models.quantize import Int8Linear
from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.events import ImageReady, TextReady
from janus_cli.pipelines.image_to_text import DescribeSettings, describe
from janus_cli.pipelines.images import make_images
from janus_cli.pipelines.session import open_session
from janus_cli.pipelines.text_to_image import GenerateSettings
from janus_cli.pipelines.text_to_image_flow import FlowSettings

pytestmark = pytest.mark.skipif(
    os.environ.get("JANUS_TEST_DEVICE") != "cuda" or not torch.cuda.is_available(),
    reason="bf16 CUDA checks: set JANUS_TEST_DEVICE=cuda on a machine with a CUDA device",
)
BF16 = torch.bfloat16


@pytest.fixture(scope="module")
def pro1b():
    return open_session("pro-1b", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cuda"), BF16)


@pytest.fixture(scope="module")
def flow():
    return open_session("flow", checkpoint_dir("janusflow-1.3b-tiny"), torch.device("cuda"), BF16)


def images(session, prompt: str, settings: GenerateSettings, batch_size: int = 4) -> list[np.ndarray]:
    events = make_images(session, [ImageJob(prompt, settings)], batch_size)
    return [e.pixels for e in events if isinstance(e, ImageReady)]


def assert_images(pixels: list[np.ndarray], n: int) -> None:
    """N decoded (H, W, 3) uint8 images with some structure (not one flat colour)."""
    assert len(pixels) == n
    for p in pixels:
        assert p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3
        assert p.std() > 0


@torch.inference_mode()
def test_the_weights_are_on_the_gpu_and_logits_are_finite(pro1b):
    model = pro1b.model
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {p.dtype for p in model.parameters() if p.is_floating_point()} == {BF16}
    llm = model.language_model
    ids = torch.tensor([pro1b.tokenizer.encode("a red fox")], device="cuda")  # (1, T)
    llm.setup_cache(rows=1, length=ids.shape[1])
    hidden = llm(llm.model.embed_tokens(ids), torch.arange(ids.shape[1], device="cuda"))
    assert torch.isfinite(llm.logits(hidden[:, -1]).float()).all()
    assert torch.isfinite(model.image_logits(hidden[:, -1]).float()).all()


def test_generate_decodes_images_and_one_seed_makes_one_image(pro1b):
    settings = GenerateSettings(n=2, seed=5, temperature=1.0, top_k=50)
    first = images(pro1b, "a red fox", settings)
    assert_images(first, 2)
    again = images(pro1b, "a red fox", settings)  # the same batch: bf16 sums differ across batch shapes
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])  # seeds 5 and 6


def test_describe_answers(pro1b):
    img = load_image(image_path("square0.png"))
    events = list(describe(pro1b, [[img]], DescribeSettings("What is in this image?", max_tokens=16)))
    answers = [e for e in events if isinstance(e, TextReady)]
    assert len(answers) == 1 and answers[0].tokens > 0 and answers[0].text.strip()


def test_int8_runs_its_cuda_kernel():
    session = open_session(
        "int8", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cuda"), BF16, quantize="int8"
    )
    int8 = [m for m in session.model.modules() if isinstance(m, Int8Linear)]
    assert int8 and any(m.packed for m in int8)  # `torch._weight_int8pack_mm` runs for these
    assert {m.weight.device.type for m in int8} == {"cuda"}
    assert_images(images(session, "a red fox", GenerateSettings(n=1, seed=3, temperature=1.0, top_k=50)), 1)


@torch.inference_mode()
def test_int4_dequantizes_on_the_gpu_and_makes_images():
    session = open_session(
        "int4", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cuda"), BF16, quantize="int4"
    )
    int4 = [m for m in session.model.modules() if isinstance(m, Int4Linear)]
    assert int4 and {m.qweight.device.type for m in int4} == {"cuda"}
    linear = int4[0]
    x = torch.randn(2, linear.in_features, device="cuda", dtype=BF16)
    ref = x.double() @ linear.dequantize(torch.float32).double().T  # the fp64 reference
    assert (linear(x).double() - ref).abs().max() <= 2**-7 * ref.abs().max()
    assert_images(images(session, "a red fox", GenerateSettings(n=1, seed=3, temperature=1.0, top_k=50)), 1)


def test_flow_images_decode_and_repeat(flow):
    vae = load_vae(checkpoint_dir("janusflow-1.3b-tiny-vae"), dtype=BF16, device=torch.device("cuda"))
    settings = FlowSettings(n=1, steps=5, seed=12345)

    def run():
        events = make_images(flow, [ImageJob("a red fox", settings)], 1, vae=vae)
        return [e.pixels for e in events if isinstance(e, ImageReady)]

    first = run()
    assert_images(first, 1)
    assert np.array_equal(first[0], run()[0])
