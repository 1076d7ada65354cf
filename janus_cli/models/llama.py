"""The DeepSeek-LLM decoder (HF Llama layout) with a static, preallocated KV cache.

Parameter names mirror `language_model.*` of the published checkpoints, so loading needs no
renaming. RoPE uses HF's rotate-half layout; RMSNorm computes in fp32 like LlamaRMSNorm.

Legend: B rows, T new tokens, S cache length, C hidden, H heads, Hkv kv heads, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.config import LlamaConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


class KVCache(nn.Module):
    """Keys and values of every position so far, preallocated as (B, Hkv, S, D).

    A module of non-persistent buffers: never in a state_dict, and torch.compile treats them as
    static inputs, which CUDA graphs need.
    """

    def __init__(self, rows: int, heads: int, length: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (rows, heads, length, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, pos: Tensor, k: Tensor, v: Tensor, used: int | None) -> tuple[Tensor, Tensor]:
        """Write k, v (B, Hkv, T, D) at positions POS (T,); return the first USED positions
        (all when None) as (B, Hkv, S, D)."""
        self.k.index_copy_(2, pos, k)
        self.v.index_copy_(2, pos, v)
        return self.k[:, :, :used], self.v[:, :, :used]


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        c, d = cfg.hidden_size, cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        self.q_proj = nn.Linear(c, cfg.num_heads * d, bias=False)
        self.k_proj = nn.Linear(c, cfg.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(c, cfg.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * d, c, bias=False)
        self.cache: KVCache | None = None

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, mask: Tensor | None, used: int | None
    ) -> Tensor:
        b, t, _ = x.shape
        q, k, v = self.place(*self.project(x), cos, sin, pos, used)  # (B, H, T, D), (B, Hkv, S, D) x2
        y = attend(q, k, v, mask)  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, C)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, C) -> q (B, T, H*D), k and v (B, T, Hkv*D)."""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def place(self, q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, used: int | None):
        """RoPE on q and k, k and v into the cache at POS; returns q (B, H, T, D) and the cache's
        first USED positions of k and v (B, Hkv, S, D)."""
        b, t, _ = q.shape
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k, v = self.cache.update(pos, k, v, used)
        return q, k, v


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, pos: Tensor, mask: Tensor | None, used: int | None
    ) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, pos, mask, used)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """`language_model.model`: embeddings, blocks and the final norm."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    """`language_model`: forward(embeds, pos) -> final-normed hidden states; never samples."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.cache_length = 0
        # Made by setup_cache; buffers (not plain attributes) so torch.compile takes them as inputs
        for name in ("rope_cos", "rope_sin", "causal"):
            self.register_buffer(name, None, persistent=False)

    def setup_cache(self, rows: int, length: int) -> None:
        """Allocate a KV cache of ROWS x LENGTH positions (replaces any previous one)."""
        w = self.model.embed_tokens.weight  # the dtype and device of the model (never re-laid out)
        cfg = self.cfg
        for layer in self.model.layers:
            layer.self_attn.cache = KVCache(rows, cfg.num_kv_heads, length, cfg.head_dim, w.dtype, w.device)
        inv_freq = 1.0 / cfg.rope_theta ** (
            torch.arange(0, cfg.head_dim, 2, dtype=torch.int64, device=w.device).float() / cfg.head_dim
        )
        freqs = torch.arange(length, device=w.device).float()[:, None] * inv_freq[None, :]  # (S, D/2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (S, D): rotate-half pairs i and i + D/2
        self.rope_cos, self.rope_sin = angles.cos(), angles.sin()
        self.causal = torch.ones(length, length, dtype=torch.bool, device=w.device).tril()
        self.cache_length = length

    def free_cache(self) -> None:
        """Drop the KV cache (setup_cache makes a new one)."""
        for layer in self.model.layers:
            layer.self_attn.cache = None

    def cache_state(self) -> tuple:
        """The current KV cache with its RoPE and mask tables, for use_cache_state: two batches
        (say image rows and text rows) can take turns on one model, each keeping its own cache."""
        caches = tuple(layer.self_attn.cache for layer in self.model.layers)
        return caches, self.rope_cos, self.rope_sin, self.causal, self.cache_length

    def use_cache_state(self, state: tuple) -> None:
        """Make STATE (from cache_state, or the same shape of tuple) the model's cache."""
        caches, self.rope_cos, self.rope_sin, self.causal, self.cache_length = state
        for layer, cache in zip(self.model.layers, caches, strict=True):
            layer.self_attn.cache = cache

    def expand_cache(self, index: Tensor) -> None:
        """Re-lay cache rows: row i of the new cache is row index[i] of the old one.

        Used to prefill each distinct prompt once and share its keys/values among many rows.
        """
        for layer in self.model.layers:
            cache = layer.self_attn.cache
            cache.k = cache.k.index_select(0, index)
            cache.v = cache.v.index_select(0, index)

    def forward(
        self,
        embeds: Tensor,
        pos: Tensor,
        key_mask: Tensor | None = None,
        used: int | None = None,
        pad: Tensor | None = None,
    ) -> Tensor:
        """Run T new tokens at positions POS through the decoder, updating the cache.

        Args:
            embeds: (B, T, C) input embeddings.
            pos: (T,) int64 cache slots of these tokens (the same for every row).
            key_mask: optional (B, S) bool, False for cached positions a row must not see
                (JanusFlow's unconditional prompt).
            used: optional number of cache positions filled after this call (pos[-1] + 1),
                given as a Python int so attention reads only those, without a device sync.
                A single new token then needs no mask at all.
            pad: optional (B,) int64 left padding, so that prompts of different lengths share
                a batch: row b's first pad[b] slots are never attended (a padding token sees
                only itself, to keep its softmax defined) and its RoPE positions count from
                slot pad[b], so each row computes what it would alone.
        Returns:
            (B, T, C) hidden states after the final norm.
        """
        rope_pos = pos[None] if pad is None else (pos[None] - pad[:, None]).clamp(min=0)  # (1 or B, T)
        cos = self.rope_cos[rope_pos].to(embeds.dtype)[:, None]  # (1 or B, 1, T, D)
        sin = self.rope_sin[rope_pos].to(embeds.dtype)[:, None]
        mask = None
        if key_mask is not None or pad is not None or used is None or embeds.shape[1] > 1:
            mask = self.causal[pos, :used][None, None]  # (1, 1, T, S)
            if key_mask is not None:
                mask = mask & key_mask[:, None, None, :used]  # (B, 1, T, S)
            if pad is not None:
                slots = torch.arange(mask.shape[-1], device=pos.device)  # (S,)
                visible = (slots[None] >= pad[:, None])[:, None, None]  # (B, 1, 1, S)
                mask = mask & (visible | (slots[None] == pos[:, None]))  # (B, 1, T, S)
        x = embeds
        for layer in self.model.layers:
            x = layer(x, cos, sin, pos, mask, used)
        return self.model.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden).float()  # (B, T, V)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax attention of q (B, H, T, D) over k, v (B, Hkv, S, D); MASK broadcasts to (B, 1, T, S).

    One bf16 query per row on the CPU (an image-token step) goes through plain matmuls instead of
    SDPA: PyTorch's CPU flash kernel costs 1.5-5x as much at those shapes (2.2 ms against 0.4 ms per
    layer at 2 rows and 600 keys). The math is transformers' eager attention: bf16 scores, an fp32
    softmax, bf16 probabilities.
    """
    b, h, t, d = q.shape
    if t > 1 or q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != h)
    groups = q.view(b, k.shape[1], h // k.shape[1], d)  # (B, Hkv, G, D): G query heads per kv head
    scores = (groups @ k.transpose(-1, -2)) * d**-0.5  # (B, Hkv, G, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # bool mask (B or 1, 1, 1, S)
    probs = scores.float().softmax(-1).to(q.dtype)
    return (probs @ v).view(b, h, 1, d)  # (B, Hkv, G, D) -> (B, H, 1, D)


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return x * cos + rotate_half(x) * sin
