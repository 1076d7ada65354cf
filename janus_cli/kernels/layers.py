"""The decoder's modules on our CPU kernels (rows.cpp), swapped in after loading.

Between its linears a token step runs some forty small PyTorch ops per layer (norms, RoPE, the
cache write, each projection's own call): at 2-8 rows they cost 10-20 % of a Janus-Pro-1B step.
Here a block's token step is one kernel call (RowsBlock). Its modules serve everything else:
q, k and v are one RowsLinear and gate and up another, and an RMSNorm is one kernel call; RoPE,
the cache write and attention of many tokens at a time (a prefill, a JanusFlow step) and of
shapes the call does not take go PyTorch's way, with the same rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.kernels.build import load_rows
from janus_cli.kernels.int8 import GROUP as INT8_GROUP
from janus_cli.kernels.int8 import Int8RowsLinear
from janus_cli.kernels.rows import RowsLinear, fits, ptr
from janus_cli.models.int4 import Int4Linear
from janus_cli.models.llama import MLP, Attention, Block, Llama, RMSNorm, rms_norm
from janus_cli.models.quantize import Int8Linear


def fuse(*linears: nn.Module) -> nn.Module:
    """One linear on our kernels for LINEARS of one input, all of one kind: int4, int8 or bf16."""
    if all(isinstance(lin, Int4Linear) for lin in linears):
        return Int4Linear.cat(*linears)
    if all(isinstance(lin, Int8Linear) for lin in linears):
        return Int8RowsLinear.from_linears(*linears)
    return RowsLinear.from_linears(*linears)


def on_kernels(linear: nn.Module) -> nn.Module:
    """LINEAR (bf16 or int8) on our kernels where they take its shape, else as it is."""
    n, k = linear.out_features, linear.in_features
    if isinstance(linear, Int8Linear):
        return Int8RowsLinear.from_linears(linear)
    return RowsLinear.from_linear(linear) if fits(n, k) else linear


class RowsRMSNorm(nn.Module):
    """RMSNorm of bf16 rows in one kernel call: LlamaRMSNorm's math and roundings (the mean's
    fp32 sum in another order)."""

    def __init__(self, norm: RMSNorm):
        super().__init__()
        self.weight, self.eps = norm.weight, norm.eps

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[-1]
        if (
            x.dtype != torch.bfloat16
            or self.weight.dtype != torch.bfloat16
            or c % 16
            or not x.is_contiguous()
        ):
            return rms_norm(x, self.weight, self.eps)
        y = torch.empty_like(x)
        load_rows()[0].janus_rmsnorm(
            x.data_ptr(), self.weight.data_ptr(), y.data_ptr(), x.numel() // c, c, self.eps
        )
        return y


class RowsAttention(Attention):
    """Attention whose q, k and v come from one linear (on kernels/rows.py, int8.py or int4.py). Its
    token steps run inside RowsBlock's one call; what reaches these modules (prefills, JanusFlow
    steps, shapes the call does not take) runs PyTorch's RoPE, cache write and attention."""

    def __init__(self, attn: Attention):
        nn.Module.__init__(self)  # not Attention's: it would allocate the four projections anew
        self.heads, self.kv_heads, self.head_dim = attn.heads, attn.kv_heads, attn.head_dim
        self.widths = [attn.heads * attn.head_dim] + [attn.kv_heads * attn.head_dim] * 2  # q, k, v
        self.qkv_proj = fuse(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o_proj = attn.o_proj
        self.cache = attn.cache

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.qkv_proj(x).split(self.widths, dim=-1)  # views of (B, T, (H + 2 Hkv) D)


class RowsMLP(nn.Module):
    """The SwiGLU MLP with gate and up as one linear."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.gate_up_proj = fuse(mlp.gate_proj, mlp.up_proj)
        self.down_proj = mlp.down_proj

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.down_proj(F.silu(gate) * up)


class RowsBlock(Block):
    """A decoder block whose token step, one new token per row, is one kernel call
    (janus_block_step: Block.forward with its roundings, in C++). Anything else runs the
    block's modules."""

    def __init__(self, block: Block):
        nn.Module.__init__(self)  # not Block's: it would allocate the whole block anew
        self.input_layernorm = RowsRMSNorm(block.input_layernorm)
        self.self_attn = RowsAttention(block.self_attn)
        self.post_attention_layernorm = RowsRMSNorm(block.post_attention_layernorm)
        self.mlp = RowsMLP(block.mlp)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, mask: Tensor | None, used: int | None
    ) -> Tensor:
        attn, mlp = self.self_attn, self.mlp
        b, t, c = x.shape
        d, cache = attn.head_dim, attn.cache
        cos_rows, sin_rows = cos.reshape(-1, d), sin.reshape(-1, d)  # (1 or B, D) when T == 1
        linears = [weights_of(lin) for lin in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)]
        usable = (
            t == 1
            and used is not None
            and cache is not None
            and used <= cache.k.shape[2]
            and x.dtype == cos.dtype == sin.dtype == torch.bfloat16
            and x.is_contiguous()
            and cos_rows.shape[0] in (1, b)
            and cos_rows.is_contiguous()
            and sin_rows.is_contiguous()
            and c % 16 == 0
            and d % 32 == 0
            and d <= 256
            and mlp.down_proj.in_features % 16 == 0
            and cache.k.dtype == torch.bfloat16
            and cache.k.is_contiguous()
            and cache.v.is_contiguous()
            and len({lin[2:] for lin in linears}) == 1  # one kind (and group) of weights
            and linears[0][2] is not None
            and self.input_layernorm.weight.dtype
            == self.post_attention_layernorm.weight.dtype
            == torch.bfloat16
            and self.input_layernorm.eps == self.post_attention_layernorm.eps  # the kernel takes one
            and (mask is None or mask.shape[-1] == used)
        )
        if not usable:
            return super().forward(x, cos, sin, pos, mask, used)
        visible = (
            None if mask is None else mask.reshape(-1, used).expand(b, used).to(torch.uint8).contiguous()
        )  # (B, S)
        out = torch.empty_like(x)  # (B, 1, C)
        (
            (qkv, qkv_scale, kind, group),
            (o, o_scale, _, _),
            (gate_up, gate_up_scale, _, _),
            (down, down_scale, _, _),
        ) = linears
        load_rows()[0].janus_block_step(
            x.data_ptr(),
            out.data_ptr(),
            self.input_layernorm.weight.data_ptr(),
            self.post_attention_layernorm.weight.data_ptr(),
            self.input_layernorm.eps,
            qkv,
            qkv_scale,
            o,
            o_scale,
            gate_up,
            gate_up_scale,
            down,
            down_scale,
            kind,
            cos_rows.data_ptr(),
            sin_rows.data_ptr(),
            d if cos_rows.shape[0] > 1 else 0,
            cache.k.data_ptr(),
            cache.v.data_ptr(),
            cache.k.stride(0),
            cache.k.stride(1),
            used - 1,
            ptr(visible),
            b,
            c,
            attn.heads,
            attn.kv_heads,
            d,
            mlp.down_proj.in_features,
            d**-0.5,
            group,
        )
        return out


BF16, INT8, INT4 = 0, 1, 2  # janus_block_step's kinds of weights (rows.cpp)


def weights_of(linear: nn.Module) -> tuple[int | None, int | None, int | None, int]:
    """A bias-free linear as janus_block_step takes it: (weight, scale) pointers, kind, group;
    kind None where the call cannot take it."""
    if isinstance(linear, RowsLinear) and linear.bias is None:
        return linear.pairs.data_ptr(), None, BF16, 0
    if isinstance(linear, Int8RowsLinear) and linear.bias is None:
        return linear.quads.data_ptr(), linear.scale.data_ptr(), INT8, INT8_GROUP
    if isinstance(linear, Int4Linear) and linear.bias is None:
        return linear.qweight.data_ptr(), linear.scales.data_ptr(), INT4, linear.group
    return None, None, None, 0


def use_rows_layers(llm: Llama) -> None:
    """In place: every block, and the final norm, on the kernels (where the fused projections
    have shapes the kernel takes). The projections left as they are (o_proj, down_proj) are for
    the caller to swap; until then the blocks' token steps run their modules."""
    c = llm.cfg
    if not (
        fits((c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size)
        and fits(2 * c.intermediate_size, c.hidden_size)
    ):
        return
    layers = llm.model.layers
    for i, layer in enumerate(layers):
        layers[i] = RowsBlock(layer)
    llm.model.norm = RowsRMSNorm(llm.model.norm)
