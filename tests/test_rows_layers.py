"""The decoder's modules on the kernels (kernels/layers.py) against the PyTorch modules they
replace: RMSNorm and RoPE with the cache write round as PyTorch does, fused projections sum in
another order, a block's one-call token step computes what its modules do, and a whole decoder
follows PyTorch's to bf16 rounding."""

import copy

import pytest
import torch
from torch import nn

from janus_cli.config import LlamaConfig
from janus_cli.kernels import build
from janus_cli.kernels.layers import RowsAttention, RowsMLP, RowsRMSNorm, on_kernels, use_rows_layers
from janus_cli.kernels.rows import RowsLinear
from janus_cli.models.int4 import Int4Linear
from janus_cli.models.layout import swap_linears
from janus_cli.models.llama import MLP, Attention, Block, Llama, RMSNorm, rms_norm
from janus_cli.models.quantize import Int8Linear

pytestmark = pytest.mark.skipif(build.load_rows()[0] is None, reason=f"rows kernels: {build.load_rows()[1]}")
BF16 = torch.bfloat16


def randomized(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.1, generator=gen)
    return module.to(BF16)


def bits(x: torch.Tensor) -> torch.Tensor:
    """bf16 X's bit patterns: equal bits tell -0.0 from 0.0, as torch.equal does not."""
    return x.contiguous().view(torch.int16)


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance in bf16 steps (same-sign values)."""
    return (a.view(torch.int16).int() - b.view(torch.int16).int()).abs().max().item()


@pytest.mark.parametrize("rows,c", [(1, 2048), (3, 64), (600, 256)])
def test_rmsnorm_rounds_as_pytorch(rows, c):
    norm = randomized(RMSNorm(c, 1e-6), c)
    norm.weight.data.abs_()  # same-sign outputs for ulps()
    x = torch.randn(rows, c, generator=torch.Generator().manual_seed(rows)).abs().to(BF16) * 3
    y = RowsRMSNorm(norm)(x)
    # only the mean's fp32 summation order differs: at most one bf16 step, rarely
    assert ulps(y, rms_norm(x, norm.weight, norm.eps)) <= 1
    # fp32: PyTorch's
    assert torch.equal(RowsRMSNorm(norm)(x.float()), rms_norm(x.float(), norm.weight, norm.eps))


def attention(heads: int, kv_heads: int, d: int, seed: int) -> Attention:
    cfg = LlamaConfig(
        hidden_size=heads * d,
        intermediate_size=64,
        num_layers=1,
        num_heads=heads,
        num_kv_heads=kv_heads,
        vocab_size=64,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=64,
    )
    return randomized(Attention(cfg), seed)


@pytest.mark.parametrize("rows", [1, 8])
def test_fused_projections_compute_the_separate_ones(rows):
    ref_attn = attention(4, 2, 32, seed=1)
    mlp = randomized(
        MLP(
            LlamaConfig(
                hidden_size=128,
                intermediate_size=96,
                num_layers=1,
                num_heads=4,
                num_kv_heads=2,
                vocab_size=64,
            )
        ),
        2,
    )
    x = torch.randn(rows, 1, 128, generator=torch.Generator().manual_seed(rows)).to(BF16)
    fused = RowsAttention(ref_attn)
    for got, want in zip(
        fused.project(x), (ref_attn.q_proj(x), ref_attn.k_proj(x), ref_attn.v_proj(x)), strict=True
    ):
        assert got.shape == want.shape and (got.float() - want.float()).abs().max() <= 8e-3 * want.abs().max()
    got, want = RowsMLP(mlp)(x), mlp(x)
    assert (got.float() - want.float()).abs().max() <= 1e-2 * want.abs().max()
    assert isinstance(fused.qkv_proj, RowsLinear) and fused.qkv_proj.out_features == (4 + 2 * 2) * 32


def test_a_decoder_on_the_kernels_follows_pytorchs(monkeypatch):
    """A prefill (PyTorch's RoPE path inside the swapped modules) and token steps (one kernel call
    per block), left padding included: hidden states agree to bf16 rounding, and the steps take
    the kernels."""
    cfg = LlamaConfig(
        hidden_size=128, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2, vocab_size=64
    )
    ref = randomized(Llama(cfg), 3)
    fast = on_the_kernels(ref, int8=False)
    assert all(isinstance(layer.self_attn, RowsAttention) for layer in fast.model.layers)
    fallbacks = []
    place = Attention.place
    monkeypatch.setattr(
        Attention, "place", lambda self, q, *a: fallbacks.append(q.shape[1]) or place(self, q, *a)
    )
    pad = torch.tensor([0, 2])  # row 1's prompt is two tokens shorter
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 128, generator=gen).to(BF16)
    for m in (ref, fast):
        m.setup_cache(rows=2, length=9)
    hidden = [m(x, torch.arange(5), used=5, pad=pad) for m in (ref, fast)]
    for step in range(5, 9):
        x = torch.randn(2, 1, 128, generator=gen).to(BF16)
        hidden += [m(x, torch.tensor([step]), used=step + 1, pad=pad) for m in (ref, fast)]
    for want, got in zip(hidden[0::2], hidden[1::2], strict=True):
        assert (got.float() - want.float()).abs().max() <= 3e-2 * want.abs().max()
    # PyTorch's RoPE: both models' prefills (2 layers each) and ref's 4 steps; none of fast's steps
    assert fallbacks == [5] * 4 + [1] * 8


def on_the_kernels(llm: Llama, int8: bool, int4: bool = False) -> Llama:
    """LLM's copy as prepare_model lays it out: int8 or int4 if asked, the blocks, then every
    linear."""
    fast = copy.deepcopy(llm)
    if int8 or int4:
        swap_linears(fast.model.layers, Int8Linear.from_linear if int8 else Int4Linear.from_linear)
    use_rows_layers(fast)
    swap_linears(fast, on_kernels, kinds=(nn.Linear, Int8Linear))
    return fast


@pytest.mark.parametrize("weights", ["bf16", "int8", "int4"])
@pytest.mark.parametrize("padded", [False, True])  # a visibility mask (left padding) or none
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (2, 2)])  # GQA with D = 64; D = 128 as in Janus
def test_a_blocks_token_step_in_one_call_computes_its_modules(monkeypatch, weights, padded, heads, kv_heads):
    """One decoder on the kernels twice: its token steps once by janus_block_step, once by the
    block's modules one by one (Block.forward, what RowsBlock falls back to). The call's
    attention sums in fp32 where PyTorch's eager path rounds scores and probabilities to bf16,
    so hidden states and caches agree to that rounding (a dropped residual or a wrong head is
    far outside it), and every step took the call."""
    cfg = LlamaConfig(
        hidden_size=256,
        intermediate_size=176,
        num_layers=2,
        num_heads=heads,
        num_kv_heads=kv_heads,
        vocab_size=64,
    )
    one_call = on_the_kernels(randomized(Llama(cfg), 5), weights == "int8", weights == "int4")
    modules = copy.deepcopy(one_call)
    for layer in modules.model.layers:
        layer.__class__ = Block  # the same modules, called one by one
    lib, calls = build.load_rows()[0], []
    block_step = lib.janus_block_step
    # a[-8]: rows
    monkeypatch.setattr(lib, "janus_block_step", lambda *a: calls.append(a[-8]) or block_step(*a))
    pad = torch.tensor([0, 3, 1]) if padded else None
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 6, 256, generator=gen).to(BF16)
    for m in (one_call, modules):
        m.setup_cache(rows=3, length=11)
        m(x, torch.arange(6), used=6, pad=pad)
    assert calls == []  # a prefill runs the modules
    for pos in range(6, 11):
        x = torch.randn(3, 1, 256, generator=gen).to(BF16)
        got, want = (m(x, torch.tensor([pos]), used=pos + 1, pad=pad) for m in (one_call, modules))
        assert close(got, want)
    assert calls == [3] * 2 * 5  # 2 layers, 5 steps
    for a, b in zip(one_call.model.layers, modules.model.layers, strict=True):
        assert close(a.self_attn.cache.k, b.self_attn.cache.k) and close(
            a.self_attn.cache.v, b.self_attn.cache.v
        )


def close(got: torch.Tensor, want: torch.Tensor) -> bool:
    """GOT follows WANT to bf16 attention rounding: within 2 % of WANT's largest value."""
    return bool((got.float() - want.float()).abs().max() <= 2e-2 * want.float().abs().max())


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (2, 2)])  # GQA with D = 64; D = 128 as in Janus
@pytest.mark.parametrize("padded", [False, True])  # one RoPE angle for all rows; each its own (left padding)
def test_the_one_calls_rope_into_the_cache_is_pytorchs_to_the_bit(monkeypatch, heads, kv_heads, padded):
    """The first layer's cache after token steps by janus_block_step and by the block's modules:
    the same norm and projection kernels feed both, so RoPE and the cache write must agree to the
    bit, the signs of zeros included (keys with zero pairs, at positions where cos < 0)."""
    cfg = LlamaConfig(
        hidden_size=256,
        intermediate_size=176,
        num_layers=1,
        num_heads=heads,
        num_kv_heads=kv_heads,
        vocab_size=64,
    )
    llm = randomized(Llama(cfg), 7)
    with torch.no_grad():
        llm.model.layers[0].self_attn.k_proj.weight[::16] = 0  # keys with zero pairs (i, i + D/2)
    one_call = on_the_kernels(llm, int8=False)
    modules = copy.deepcopy(one_call)
    modules.model.layers[0].__class__ = Block
    lib, calls = build.load_rows()[0], []
    block_step = lib.janus_block_step
    monkeypatch.setattr(lib, "janus_block_step", lambda *a: calls.append(a[-8]) or block_step(*a))
    pad = torch.tensor([0, 3, 1]) if padded else None
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(3, 2, 256, generator=gen).to(BF16)
    for m in (one_call, modules):
        m.setup_cache(rows=3, length=12)
        m(x, torch.arange(2), used=2, pad=pad)
    for pos in range(2, 12):  # cos of the first angle turns negative from position 2 on
        x = torch.randn(3, 1, 256, generator=gen).to(BF16)
        for m in (one_call, modules):
            m(x, torch.tensor([pos]), used=pos + 1, pad=pad)
    assert calls == [3] * 10
    a, b = one_call.model.layers[0].self_attn.cache, modules.model.layers[0].self_attn.cache
    assert (bits(a.k) == bits(torch.tensor(-0.0, dtype=BF16))).any()  # negative zeros were written
    assert torch.equal(bits(a.k), bits(b.k)) and torch.equal(bits(a.v), bits(b.v))


def test_a_slot_past_the_cache_is_pytorchs_error_not_a_stray_write(monkeypatch):
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=96, num_layers=1, num_heads=2, num_kv_heads=2, vocab_size=64
    )
    fast = on_the_kernels(randomized(Llama(cfg), 0), int8=False)
    lib, calls = build.load_rows()[0], []
    monkeypatch.setattr(lib, "janus_block_step", lambda *a: calls.append(a))
    fast.setup_cache(rows=1, length=4)
    with pytest.raises((IndexError, RuntimeError)):
        fast(torch.randn(1, 1, 64).to(BF16), torch.tensor([4]), used=5)  # slot 4 of a 4-slot cache
    assert calls == []
