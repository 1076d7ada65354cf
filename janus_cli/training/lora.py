"""LoRA: a frozen Linear plus a trainable low-rank update, y = W x + (alpha / r) B A dropout(x).

A and B are fp32 whatever the base's dtype (a bf16 base keeps its bytes; the update and the
optimizer state keep fp32 precision). B starts at zero, so a fresh adapter changes nothing.
Dropout draws from a generator seeded per forward (`set_dropout_seed`), not from the global RNG:
gradient checkpointing recomputes a block's forward, and must draw the same mask again.

Legend: B rows, T tokens, I in features, O out features, r rank.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEADS = ("gen_head", "gen_aligner")  # what --train-head trains fully


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float, index: int):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.rank, self.scale, self.dropout, self.index = rank, alpha / rank, dropout, index
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32, device=device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32, device=device))
        self.seed: int | None = None  # set per micro-batch by the loop; None: no dropout (eval)
        self.enabled = True  # False: the base alone (the sample grid's "base" row)

    def reset(self, generator: torch.Generator) -> None:
        """A as nn.Linear's default (Kaiming-uniform), drawn from GENERATOR; B zero."""
        bound = 1 / math.sqrt(self.base.in_features)
        a = (
            torch.rand(self.lora_A.shape, generator=generator) * 2 * bound - bound
        )  # on the CPU: same on all devices
        with torch.no_grad():
            self.lora_A.copy_(a)
            self.lora_B.zero_()

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)  # (B, T, O) in the base's dtype
        if not self.enabled:
            return y
        h = x.float()
        if self.dropout and self.seed is not None and self.training:
            g = torch.Generator(device=x.device).manual_seed(self.seed * 100_003 + self.index)
            keep = torch.empty_like(h).bernoulli_(1 - self.dropout, generator=g)
            h = h * keep / (1 - self.dropout)
        return y + ((h @ self.lora_A.T @ self.lora_B.T) * self.scale).to(y.dtype)  # (B, T, I) -> (B, T, O)

    def delta(self) -> Tensor:
        """(O, I) fp32: what merging adds to the base weight, (alpha / r) B A."""
        return self.scale * (self.lora_B @ self.lora_A)


def add_lora(
    llm: nn.Module, rank: int, alpha: float, dropout: float, generator: torch.Generator
) -> dict[str, LoRALinear]:
    """Wrap every TARGETS linear under LLM (the unprepared `language_model`) in place.

    Returns:
        {module path under LLM (e.g. `model.layers.0.self_attn.q_proj`): its LoRALinear}, in
        model order; A is drawn from GENERATOR in that order.
    """
    names = [
        n for n, m in llm.named_modules() if n.rsplit(".", 1)[-1] in TARGETS and isinstance(m, nn.Linear)
    ]
    wrapped = {}
    for i, name in enumerate(names):
        parent_name, _, attr = name.rpartition(".")
        parent = llm.get_submodule(parent_name)
        lora = LoRALinear(getattr(parent, attr), rank, alpha, dropout, i)
        lora.reset(generator)
        setattr(parent, attr, lora)
        wrapped[name] = lora
    return wrapped


def set_dropout_seed(loras: dict[str, LoRALinear], seed: int | None) -> None:
    for lora in loras.values():
        lora.seed = seed


def set_enabled(loras: dict[str, LoRALinear], enabled: bool) -> None:
    for lora in loras.values():
        lora.enabled = enabled


def train_in_fp32(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Make MODULE (a head trained whole) trainable fp32 parameters inside a DTYPE model: its
    inputs are cast to fp32 and its outputs back to DTYPE by hooks, so the module keeps its
    names (and its checkpoint keys) and inference runs through it unchanged."""
    module.float().requires_grad_(True)
    module.register_forward_pre_hook(
        lambda m, args: tuple(a.float() if a.is_floating_point() else a for a in args)
    )
    module.register_forward_hook(lambda m, args, out: out.to(dtype))
    return module
