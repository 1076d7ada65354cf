"""SigLIP-L/16 at 384 px, the understanding tower (a timm-style ViT without class token).

Names mirror `vision_model.vision_tower.*`. The `attn_pool` head in the checkpoints is never
used for Janus (the tower returns all 576 patch features after the final LayerNorm).

Legend: B images, N patches (576), C width (1024), H heads, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.config import SigLIPConfig


class PatchEmbed(nn.Module):
    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, C, 24, 24) -> (B, N, C), row-major


class SelfAttention(nn.Module):
    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, N, D)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, N, D)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as Janus's copy of the tower


class Block(nn.Module):
    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SigLIPViT(nn.Module):
    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, cfg.width))
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, 384, 384) normalised pixels -> (B, 576, 1024) features."""
        x = self.patch_embed(pixels) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VisionTower(nn.Module):
    """The `vision_model` / `vision_und_enc_model` wrapper: only holds `vision_tower`."""

    def __init__(self, cfg: SigLIPConfig):
        super().__init__()
        self.vision_tower = SigLIPViT(cfg)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.vision_tower(pixels)
