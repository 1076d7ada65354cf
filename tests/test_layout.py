"""The CPU fast paths: oneDNN-blocked linears and the single-query bf16 attention."""

import pytest
import torch
import torch.nn.functional as F
from conftest import checkpoint_dir
from torch import nn

from janus_cli.models.layout import PackedLinear, can_pack, pack_linears
from janus_cli.models.llama import attend
from janus_cli.models.quantize import Int8Linear
from janus_cli.pipelines.session import open_session

needs_onednn = pytest.mark.skipif(
    not can_pack(torch.device("cpu"), torch.float32), reason="no oneDNN in this torch"
)


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
# decode rows and a prefill
@pytest.mark.parametrize("shape", [(1, 1, 320), (3, 320), (2, 7, 320), (600, 320)])
def test_packed_linear_computes_what_linear_computes(bias, shape):
    gen = torch.Generator().manual_seed(len(shape))
    linear = nn.Linear(320, 96, bias=bias)
    with torch.no_grad():
        for p in linear.parameters():
            p.normal_(0, 0.05, generator=gen)
    x = torch.randn(shape, generator=gen)
    with torch.inference_mode():
        # bf16: the same oneDNN kernel F.linear uses, so bit-identical; fp32: summation order only.
        bf16 = linear.to(torch.bfloat16)
        assert torch.equal(PackedLinear(bf16)(x.bfloat16()), bf16(x.bfloat16()))
        fp32 = linear.float()
        torch.testing.assert_close(PackedLinear(fp32)(x), fp32(x), rtol=1e-5, atol=1e-6)
        strided = torch.randn(*shape[:-1], 640, generator=gen)[..., ::2]  # a non-contiguous input
        torch.testing.assert_close(PackedLinear(fp32)(strided), fp32(strided), rtol=1e-5, atol=1e-6)


@needs_onednn
@pytest.mark.parametrize(
    "dtype,quantize", [(torch.float32, "none"), (torch.bfloat16, "none"), (torch.bfloat16, "int8")]
)
def test_a_cpu_session_runs_every_float_linear_packed(dtype, quantize, without_rows_kernels):
    model = open_session(
        "tiny", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cpu"), dtype, quantize
    ).model
    kinds = {type(m) for m in model.modules()}
    assert nn.Linear not in kinds and PackedLinear in kinds
    assert (Int8Linear in kinds) == (quantize == "int8")
    assert isinstance(model.language_model.lm_head, PackedLinear)  # never quantized, always packed


def test_pack_linears_leaves_other_devices_and_dtypes_alone():
    assert not can_pack(torch.device("meta"), torch.float32)
    assert not can_pack(torch.device("cpu"), torch.float16)
    q = Int8Linear.from_linear(nn.Linear(32, 16))
    model = nn.Sequential(q, nn.GELU())
    assert pack_linears(model)[0] is q


@pytest.mark.parametrize("heads,kv_heads", [(8, 8), (8, 2)])  # Janus's MHA and a grouped-query layout
def test_single_query_bf16_attention_matches_exact_attention(heads, kv_heads):
    gen = torch.Generator().manual_seed(heads + kv_heads)
    q = torch.randn(3, heads, 1, 32, generator=gen)
    k, v = torch.randn(2, 3, kv_heads, 50, 32, generator=gen)
    mask = torch.rand(3, 1, 1, 50, generator=gen) > 0.3
    mask[..., -1] = True  # every row sees at least its own slot
    for m in (None, mask):
        exact = F.scaled_dot_product_attention(
            q.double(), k.double(), v.double(), attn_mask=m, enable_gqa=heads != kv_heads
        )
        y = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), m)
        assert y.shape == (3, heads, 1, 32) and y.dtype == torch.bfloat16
        # bf16 inputs, scores and probabilities (transformers' eager attention): ~3 bf16 steps.
        assert (y.double() - exact).abs().max().item() < 0.03


def test_bf16_decode_steps_on_cpu_bypass_sdpa(monkeypatch):
    q, k, v = (
        torch.randn(2, 4, 1, 16).bfloat16(),
        torch.randn(2, 4, 9, 16).bfloat16(),
        torch.randn(2, 4, 9, 16).bfloat16(),
    )
    reference = F.scaled_dot_product_attention(q, k, v)

    def refuse(*args, **kwargs):
        raise AssertionError("SDPA called for a single bf16 query on the CPU")

    monkeypatch.setattr(F, "scaled_dot_product_attention", refuse)
    assert (attend(q, k, v, None).float() - reference.float()).abs().max().item() < 0.03
    with pytest.raises(AssertionError):
        attend(q.float(), k.float(), v.float(), None)  # fp32 keeps SDPA (parity runs there)
