"""The VQ-16 image decoder (LlamaGen): image codes -> pixels.

Names mirror `gen_vision_model.*`. Only the decode path is built; the checkpoint's encoder,
`quant_conv` and `codebook_used` are not needed to turn generated codes into images.

Legend: B images, C channels, h w code grid (24 x 24), E codebook dim (8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class VQConfig:
    """LlamaGen VQ-16 as hard-coded by the official class (config.json does not size it)."""

    codebook_size: int = 16384
    code_dim: int = 8
    z_channels: int = 256
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    res_blocks: int = 3  # per decoder level (num_res_blocks 2 + 1)


def group_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over all h*w positions, 1x1-conv projections."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = group_norm(c)
        self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        # (B, 1, hw, C)
        q, k, v = (p(n).flatten(2).transpose(1, 2)[:, None] for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, hw, C)
        return x + self.proj_out(y[:, 0].transpose(1, 2).reshape(b, c, h, w))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One decoder resolution: ResBlocks (with attention at the lowest), then upsampling."""

    def __init__(self, c_in: int, c_out: int, blocks: int, attention: bool, upsample: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c_in if i == 0 else c_out, c_out) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(blocks if attention else 0))
        self.upsample = Upsample(c_out) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for i, res in enumerate(self.res):
            x = res(x)
            if self.attn:
                x = self.attn[i](x)
        return x if self.upsample is None else self.upsample(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in reversed(cfg.channel_mult)]  # lowest resolution first
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[0], 3, padding=1)
        self.mid = nn.ModuleList(
            [ResBlock(widths[0], widths[0]), AttnBlock(widths[0]), ResBlock(widths[0], widths[0])]
        )
        last = len(widths) - 1
        self.conv_blocks = nn.ModuleList(
            Level(widths[max(j - 1, 0)], widths[j], cfg.res_blocks, attention=j == 0, upsample=j != last)
            for j in range(len(widths))
        )
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for level in self.conv_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Quantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.code_dim)


class VQDecoder(nn.Module):
    def __init__(self, cfg: VQConfig = VQConfig()):
        super().__init__()
        self.quantize = Quantizer(cfg)
        self.post_quant_conv = nn.Conv2d(cfg.code_dim, cfg.z_channels, 1)
        self.decoder = Decoder(cfg)

    def forward(self, codes: Tensor, grid: int = 24) -> Tensor:
        """(B, h*w) codes in raster order -> (B, 3, 16h, 16w) images in about [-1, 1]."""
        book = F.normalize(self.quantize.embedding.weight, p=2, dim=-1)  # L2-normalised rows
        z = book[codes].view(codes.shape[0], grid, grid, -1).permute(0, 3, 1, 2)  # (B, E, h, w)
        return self.decoder(self.post_quant_conv(z))
