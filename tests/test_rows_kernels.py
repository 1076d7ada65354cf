"""The few-rows CPU kernels (kernels/rows.cpp): layout, numbers against a float reference, the
switch to PyTorch's matmul for many rows, where a session uses them, and the fallbacks."""

import copy
import os

import pytest
import torch
from conftest import checkpoint_dir
from torch import nn

from janus_cli.checkpoints.load import load_model
from janus_cli.kernels import build
from janus_cli.kernels.int8 import Int8RowsLinear
from janus_cli.kernels.layers import RowsBlock
from janus_cli.kernels.rows import RowsLinear, pack_pairs, unpack_pairs
from janus_cli.models.layout import PackedLinear
from janus_cli.models.quantize import Int8Linear
from janus_cli.pipelines.session import open_session, prepare_model
from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.agreement import greedy_agreement

CPU = torch.device("cpu")
needs_kernels = pytest.mark.skipif(
    build.load_rows()[0] is None, reason=f"rows kernels: {build.load_rows()[1]}"
)
SHAPES = [
    (176, 64),
    (64, 176),
    (96, 320),
    (2048, 8),
    (80, 6),
]  # (N, K): tail blocks, tiny K, the tiny checkpoints'


@pytest.mark.parametrize("n,k", SHAPES)
def test_pair_blocks_round_trip(n, k):
    width = 64
    w = (torch.arange(n * k) % 101 - 50).view(n, k).to(torch.bfloat16)  # exact
    flat = pack_pairs(w)
    assert flat.shape == (n * k,) and torch.equal(unpack_pairs(flat, n, k), w)
    # block 0 starts with the pair (w[0, 0], w[0, 1]), then output 1's pair: outputs run fastest
    assert flat[:4].tolist() == [w[0, 0], w[0, 1], w[1, 0], w[1, 1]]
    # the next block (a full one, or a tail of 16) starts at output `width`
    if n > width:
        assert flat[width * k : width * k + 2].tolist() == w[width, :2].tolist()


def linear_of(n: int, k: int, bias: bool, seed: int) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        for p in linear.parameters():
            p.normal_(0, 0.05, generator=gen)
    return linear.to(torch.bfloat16)


@needs_kernels
@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_rows_linear_computes_the_linear(n, k, bias):
    linear = linear_of(n, k, bias, seed=n + k)
    w = linear.weight.float()  # (N, K)
    fast = RowsLinear.from_linear(linear)
    gen = torch.Generator().manual_seed(k)
    for rows in (
        1,
        2,
        3,
        6,
        7,
        8,
        9,
        13,
        16,
        40,
        300,
    ):  # every row tiling, and a prefill's many rows
        x = torch.randn(rows, k, generator=gen).bfloat16()
        ref = x.float() @ w.T + (linear.bias.float() if bias else 0)  # (M, N)
        with torch.inference_mode():
            y = fast(x[None])  # (1, M, N): leading dims are kept
        assert y.shape == (1, rows, n) and y.dtype == torch.bfloat16
        # fp32 sums of exact bf16 products; the output's bf16 rounding dominates (2^-8 relative)
        assert (y[0].float() - ref).abs().max().item() <= 8e-3 * ref.abs().max().item(), rows


@needs_kernels
def test_rows_linear_takes_bf16_inputs_only():
    with pytest.raises(TypeError, match="bf16 inputs"):
        RowsLinear.from_linear(linear_of(64, 64, True, 0))(torch.randn(2, 64))


@needs_kernels
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_a_bf16_cpu_session_runs_its_token_step_on_the_kernels(quantize):
    model = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), CPU, torch.bfloat16, quantize).model
    for name in model.TOKEN_STEP:
        kinds = {type(m) for m in getattr(model, name).modules()}
        assert kinds & {RowsLinear, Int8RowsLinear} and not kinds & {nn.Linear, Int8Linear, PackedLinear}, (
            name
        )
    ours = Int8RowsLinear if quantize == "int8" else RowsLinear  # the blocks' and the image head's
    for part in (model.language_model.model.layers, model.gen_head):
        kinds = {type(m) for m in part.modules()}
        assert ours in kinds and not ({RowsLinear, Int8RowsLinear} - {ours}) & kinds
    # prefill-only: oneDNN
    assert isinstance(model.vision_model.vision_tower.blocks[0].attn.qkv, PackedLinear)
    assert all(
        isinstance(layer, RowsBlock) for layer in model.language_model.model.layers
    )  # one call per token step
    fp32 = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), CPU, torch.float32).model
    assert not any(isinstance(m, RowsLinear) for m in fp32.modules())  # bf16 activations only


@needs_kernels
def test_kernel_decoding_follows_pytorchs_kernels():
    """bf16 greedy image tokens on the kernels against the same weights on oneDNN: only the
    summation order differs, so the logits agree to bf16 rounding."""
    loaded = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.bfloat16)
    reference = copy.deepcopy(loaded)
    reference.TOKEN_STEP = ()  # no RowsLinear: every linear on PyTorch's oneDNN kernels
    prepare_model(reference, CPU, torch.bfloat16)
    fast = prepare_model(loaded, CPU, torch.bfloat16)
    assert any(isinstance(m, RowsLinear) for m in fast.modules())
    assert not any(isinstance(m, RowsLinear) for m in reference.modules())
    prompt = torch.randint(10, 1200, (30,), generator=torch.Generator().manual_seed(0)).tolist()
    a = greedy_agreement(reference, fast, prompt, make_uncond_ids(prompt, 0), n=2, cfg=5.0, steps=64)
    assert a.tokens >= 0.95
    assert a.max_logit_error <= 0.02 * a.logit_scale


def test_no_compiler_means_pytorchs_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built yet
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    monkeypatch.setattr(build, "cpu_flags", lambda: set(build.ROWS_CPU_FLAGS))
    build.load_rows.cache_clear()
    try:
        lib, why = build.load_rows()
        assert lib is None and "no C++ compiler" in why
        model = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), CPU, torch.bfloat16).model
        assert not any(isinstance(m, RowsLinear) for m in model.modules())
        assert isinstance(model.language_model.lm_head, PackedLinear)
    finally:
        build.load_rows.cache_clear()


def test_the_kernels_can_be_turned_off(without_rows_kernels):
    assert build.load_rows() == (None, "JANUS_CPU_KERNELS=0")
    model = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), CPU, torch.bfloat16).model
    assert not any(isinstance(m, RowsLinear) for m in model.modules())


def test_the_kernels_need_the_instructions(monkeypatch):
    try:
        monkeypatch.setattr(build, "cpu_flags", lambda: {"avx512f", "avx2"})
        build.load_rows.cache_clear()
        lib, why = build.load_rows()
        assert lib is None and why == "this CPU lacks avx512bw, avx512vl, avx512_bf16, avx512_vnni"
    finally:
        build.load_rows.cache_clear()


@pytest.mark.skipif(build.compiler() is None, reason="no C++ compiler")
def test_a_build_is_cached_and_a_broken_source_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = build.build("rows.cpp", build.ROWS_FLAGS, build.ROWS_HEADERS)
    assert first.parent == tmp_path / "janus-cli" / "kernels" and first.exists()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))  # a cached build needs no compiler
    assert build.build("rows.cpp", build.ROWS_FLAGS, build.ROWS_HEADERS) == first
    monkeypatch.delenv("CXX")
    with pytest.raises(build.KernelUnavailable, match="could not build rows.cpp"):
        broken = [*build.ROWS_FLAGS, "-DJANUS_NO_SUCH_FLAG", "-fno-such-option"]
        build.build("rows.cpp", broken, build.ROWS_HEADERS)


def test_the_command_line_asks_for_huge_pages_before_torch_loads(monkeypatch):
    from janus_cli.cli import main

    for preset, expected in ((None, "1"), ("0", "0")):  # a user's own setting wins
        if preset is None:
            monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
        else:
            monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", preset)
        monkeypatch.setattr("sys.argv", ["janus", "--version"])
        with pytest.raises(SystemExit):
            main()
        assert os.environ["THP_MEM_ALLOC_ENABLE"] == expected


def test_the_load_line_names_the_kernels_of_a_bf16_cpu_session(monkeypatch):
    from types import SimpleNamespace

    from janus_cli.cli.console import kernel_note

    session = SimpleNamespace(device=CPU, dtype=torch.bfloat16, compile=False, quantize="none")
    monkeypatch.setattr(build, "load_rows", lambda: (object(), "own AVX512-BF16 kernels"))
    assert kernel_note(session) == ", own AVX512-BF16 kernels"
    monkeypatch.setattr(build, "load_rows", lambda: (None, "this CPU lacks avx512_bf16"))
    assert kernel_note(session) == ", PyTorch kernels: this CPU lacks avx512_bf16"
    assert kernel_note(SimpleNamespace(device=CPU, dtype=torch.float32, compile=False, quantize="none")) == ""
    assert kernel_note(SimpleNamespace(device=CPU, dtype=torch.bfloat16, compile=True, quantize="none")) == ""
