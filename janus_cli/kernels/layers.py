"""The decoder's modules on our CPU kernels (rows.cpp), swapped in after loading.

Between its linears a token step runs some forty small PyTorch ops per layer (norms, RoPE, the
cache write, each projection's own call): at 2-8 rows they cost 10-20 % of a Janus-Pro-1B step.
Here q, k and v are one RowsLinear and gate and up another, an RMSNorm is one kernel call, and
RoPE with the cache write is one more. Many tokens at a time (a prefill, a JanusFlow step) and
shapes the kernels do not take go the modules' PyTorch way, with the same rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.kernels.build import load_rows
from janus_cli.kernels.rows import RowsLinear, attend_one, fits
from janus_cli.models.llama import MLP, Attention, Llama, RMSNorm, rms_norm


class RowsRMSNorm(nn.Module):
    """RMSNorm of bf16 rows in one kernel call: LlamaRMSNorm's math and roundings (the mean's
    fp32 sum in another order)."""

    def __init__(self, norm: RMSNorm):
        super().__init__()
        self.weight, self.eps = norm.weight, norm.eps

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[-1]
        if x.dtype != torch.bfloat16 or self.weight.dtype != torch.bfloat16 or c % 16 or not x.is_contiguous():
            return rms_norm(x, self.weight, self.eps)
        y = torch.empty_like(x)
        load_rows()[0].janus_rmsnorm(x.data_ptr(), self.weight.data_ptr(), y.data_ptr(), x.numel() // c, c, self.eps)
        return y


class RowsAttention(Attention):
    """Attention whose q, k and v come from one RowsLinear, whose single-query attention runs on
    attend_one, and whose one new token per row gets RoPE and goes into the cache in one call."""

    def __init__(self, attn: Attention):
        nn.Module.__init__(self)  # not Attention's: it would allocate the four projections anew
        self.heads, self.kv_heads, self.head_dim = attn.heads, attn.kv_heads, attn.head_dim
        self.widths = [attn.heads * attn.head_dim] + [attn.kv_heads * attn.head_dim] * 2  # q, k, v
        self.qkv_proj = RowsLinear.from_linears(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o_proj = attn.o_proj
        self.cache = attn.cache
        self.attend = attend_one

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.qkv_proj(x).split(self.widths, dim=-1)  # views of (B, T, (H + 2 Hkv) D)

    def place(self, q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, used: int | None):
        b, t, _ = q.shape
        d = self.head_dim
        cos_rows, sin_rows = cos.reshape(-1, d), sin.reshape(-1, d)  # (1 or B, D): one token per row
        usable = (
            t == 1 and used is not None and used <= self.cache.k.shape[2] and d % 32 == 0
            and q.dtype == cos.dtype == sin.dtype == torch.bfloat16 and q.stride(0) == k.stride(0) == v.stride(0)
            and cos_rows.is_contiguous() and sin_rows.is_contiguous()
        )  # fmt: skip
        if not usable:
            return super().place(q, k, v, cos, sin, pos, used)
        # `used` is pos[-1] + 1 (Llama.forward's contract), so the token's slot is used - 1
        cache, slot = self.cache, used - 1
        q_out = torch.empty(b, self.heads, 1, d, dtype=q.dtype)  # (B, H, 1, D)
        load_rows()[0].janus_rope_step(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), q.stride(0), cos_rows.data_ptr(), sin_rows.data_ptr(),
            d if cos_rows.shape[0] > 1 else 0, q_out.data_ptr(), cache.k[:, :, slot].data_ptr(), cache.v[:, :, slot].data_ptr(),
            b, self.heads, self.kv_heads, d, cache.k.stride(0), cache.k.stride(1),
        )  # fmt: skip
        return q_out, cache.k[:, :, :used], cache.v[:, :, :used]


class RowsMLP(nn.Module):
    """The SwiGLU MLP with gate and up as one RowsLinear."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.gate_up_proj = RowsLinear.from_linears(mlp.gate_proj, mlp.up_proj)
        self.down_proj = mlp.down_proj

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.down_proj(F.silu(gate) * up)


def use_rows_layers(llm: Llama) -> None:
    """In place: every block's attention, MLP and norms, and the final norm, on the kernels
    (where the fused projections have shapes the kernel takes). The projections left as they
    are (o_proj, down_proj) are for the caller to swap."""
    c = llm.cfg
    if not (fits((c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size) and fits(2 * c.intermediate_size, c.hidden_size)):
        return
    for layer in llm.model.layers:
        layer.self_attn = RowsAttention(layer.self_attn)
        layer.mlp = RowsMLP(layer.mlp)
        layer.input_layernorm = RowsRMSNorm(layer.input_layernorm)
        layer.post_attention_layernorm = RowsRMSNorm(layer.post_attention_layernorm)
    llm.model.norm = RowsRMSNorm(llm.model.norm)
