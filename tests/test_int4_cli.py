"""`--quantize int4` end to end on the tiny fixtures: the session's modules, the one-call block
step, the command line (generate and its PNG recipe, describe, flow-generate), the Python API and
an int4 `janus serve` answered by the openai client."""

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import checkpoint_dir, image_path
from conftest import run_janus as run
from PIL import Image
from serve_helpers import serving
from torch import nn

import janus_cli
from janus_cli.checkpoints.load import load_model
from janus_cli.kernels import build, layers
from janus_cli.models.int4 import Int4Linear
from janus_cli.models.quantize import PARTS, SCHEMES, Int8Linear, part_of, quantize_int4, quantize_linear
from janus_cli.pipelines.session import prepare_model
from janus_cli.prompts import make_uncond_ids
from janus_cli.runtime import QUANTIZE_MODES
from janus_cli.sampling.agreement import greedy_agreement

CPU = torch.device("cpu")
PRO = "janus-pro-1b-tiny"
needs_kernel = pytest.mark.skipif(build.load_rows()[0] is None, reason=f"kernels: {build.load_rows()[1]}")


def tensor_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def test_one_table_of_schemes_serves_every_front_end():
    assert set(SCHEMES) == set(QUANTIZE_MODES) - {"none"}
    assert part_of("language_model.model.layers.3.mlp.down_proj") == "blocks"
    assert part_of("gen_head.vision_head") == "head"
    assert part_of("language_model.lm_head") is None and part_of("gen_aligner.layers.0") is None
    assert set(PARTS) == {"blocks", "head"}
    linear = nn.Linear(64, 32)
    assert isinstance(quantize_linear(linear, "int4"), Int4Linear)
    assert isinstance(quantize_linear(linear, "int4", "head"), Int8Linear)


def test_int4_blocks_take_under_a_third_of_the_bytes_and_the_head_stays_int8():
    model = load_model(checkpoint_dir("janus-pro-7b-tiny"), torch.bfloat16)  # hidden 96: padded groups
    before = tensor_bytes(model.language_model.model.layers)
    quantize_int4(model)
    layer = model.language_model.model.layers[0]
    assert all(isinstance(m, Int4Linear) for m in (layer.self_attn.q_proj, layer.mlp.down_proj))
    assert isinstance(model.gen_head.vision_head, Int8Linear)
    # 0.5625 bytes a weight at group 64, the norms in bf16, and K = 96 padded to 128
    assert tensor_bytes(model.language_model.model.layers) / before < 0.45


@needs_kernel
def test_a_bf16_session_runs_int4_token_steps_in_one_call_per_block(monkeypatch):
    loaded = load_model(checkpoint_dir("janus-1.3b-tiny"), torch.bfloat16)  # head dim 64: the call takes it
    fast = prepare_model(copy.deepcopy(loaded), CPU, torch.bfloat16, "int4")
    block = fast.language_model.model.layers[0]
    assert isinstance(block, layers.RowsBlock) and isinstance(block.self_attn.qkv_proj, Int4Linear)
    modules = prepare_model(copy.deepcopy(loaded), CPU, torch.bfloat16, "int4")
    for b in modules.language_model.model.layers:  # the same int4 weights through the modules
        b.forward = lambda *a, b=b: layers.Block.forward(b, *a)
    calls = []
    lib = build.load_rows()[0]

    class Counting:
        def __getattr__(self, name):
            if name == "janus_block_step":
                calls.append(name)
            return getattr(lib, name)

    monkeypatch.setattr(layers, "load_rows", lambda: (Counting(), "counting"))
    prompt = torch.randint(10, 1200, (30,), generator=torch.Generator().manual_seed(0)).tolist()
    a = greedy_agreement(modules, fast, prompt, make_uncond_ids(prompt, 0), n=2, cfg=5.0, steps=16)
    assert len(calls) >= 15 * len(fast.language_model.model.layers)  # token steps took the call
    # Only summation orders differ, but a bf16 ulp that moves an activation across an int8
    # rounding boundary moves it a whole int8 step: measured 0.94 agreement and logit errors of
    # 2.4-2.7 % (seeds 0-1; bf16 weights through the same two paths: 1.0 and 1.2-1.7 %).
    assert a.tokens >= 0.85 and a.max_logit_error <= 0.05 * a.logit_scale


def generate(tmp_path, *extra, dtype="bfloat16"):
    return run(
        "generate",
        "a lighthouse at dawn",
        "-m",
        str(checkpoint_dir(PRO)),
        "--seed",
        "3",
        "--top-k",
        "50",
        "-o",
        str(tmp_path),
        "--dtype",
        dtype,
        *extra,
    )


def test_generate_with_int4_and_its_recipe_remakes_the_pixels(tmp_path):
    r = generate(tmp_path / "first", "--quantize", "int4")
    assert r.returncode == 0, r.stderr
    second = r.stdout.strip()
    meta = json.loads(Image.open(second).info["janus-cli"])
    assert meta["quantize"] == "int4"
    again = run("generate", "--from-image", second, "-o", str(tmp_path / "again"), "--json", "-q")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)["images"][0]
    assert np.array_equal(np.array(Image.open(second)), np.array(Image.open(doc["path"])))


def test_describe_and_flow_generate_take_int4_from_the_environment(tmp_path):
    env = {"JANUS_QUANTIZE": "int4"}
    r = run(
        "describe",
        str(image_path("square0.png")),
        "-m",
        str(checkpoint_dir(PRO)),
        "--dtype",
        "bfloat16",
        env=env,
    )
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    flow = "janusflow-1.3b-tiny"
    r = run(
        "flow-generate",
        "a fox",
        "-m",
        str(checkpoint_dir(flow)),
        "--vae",
        str(checkpoint_dir(f"{flow}-vae")),
        "--steps",
        "2",
        "-o",
        str(tmp_path),
        "--dtype",
        "bfloat16",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(Image.open(r.stdout.strip()).info["janus-cli"])["quantize"] == "int4"


def test_the_api_loads_int4_and_says_so_in_the_load_line(monkeypatch):
    from janus_cli.cli.console import kernel_note

    m = janus_cli.load(str(checkpoint_dir(PRO)), device="cpu", dtype="float32", quantize="int4")
    assert m.session.quantize == "int4"
    assert any(isinstance(x, Int4Linear) for x in m.session.model.modules())
    assert m.describe(image_path("square0.png"), "what is this?", max_tokens=4)
    assert kernel_note(m.session) == ", int4 dequantized to float32 per call"
    bf16 = SimpleNamespace(device=CPU, dtype=torch.bfloat16, compile=False, quantize="int4")
    monkeypatch.setattr(build, "load_rows", lambda: (object(), "own AVX512-BF16 kernels"))
    assert kernel_note(bf16) == ", own AVX512-BF16 kernels, own AVX512-VNNI int4 kernel"
    monkeypatch.setattr(build, "load_rows", lambda: (None, "JANUS_CPU_KERNELS=0"))
    assert kernel_note(bf16) == ", PyTorch kernels: JANUS_CPU_KERNELS=0, int4 on PyTorch's int4 kernel"


def test_an_int4_server_answers_the_openai_client(tmp_path):
    openai = pytest.importorskip("openai")
    args = [
        "-m",
        str(checkpoint_dir(PRO)),
        "--quantize",
        "int4",
        "--dtype",
        "bfloat16",
        "--output-dir",
        str(tmp_path),
    ]
    with serving(*args) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        (model,) = [m.id for m in client.models.list().data]
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], temperature=0, max_tokens=4
        )
        assert r.choices[0].finish_reason in ("length", "stop") and r.usage.completion_tokens <= 4
        images = client.images.generate(model=model, prompt="a red fox", n=1, response_format="b64_json")
        assert len(images.data) == 1 and images.data[0].b64_json
