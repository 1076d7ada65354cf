"""The VQ-16 image tokenizer (LlamaGen): image codes -> pixels, and pixels -> codes.

Names mirror `gen_vision_model.*`. Generation only decodes; the encoder and `quant_conv` turn
training images into the codes the model learns to generate, and a session loads them only when
asked (the "encoding" part, models/janus.py). The `codebook_used` statistics buffer is not built.

Legend: B images, C channels, h w code grid (24 x 24), E codebook dim (8), V codebook size.
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
    encoder_res_blocks: int = 2  # per encoder level (num_res_blocks)


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


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # the official asymmetric pad: right and bottom


class Level(nn.Module):
    """One resolution: ResBlocks (with attention at the lowest), then up- or downsampling."""

    def __init__(
        self, c_in: int, c_out: int, blocks: int, attention: bool, upsample: bool, downsample: bool = False
    ):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c_in if i == 0 else c_out, c_out) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(blocks if attention else 0))
        self.upsample = Upsample(c_out) if upsample else None
        self.downsample = Downsample(c_out) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for i, res in enumerate(self.res):
            x = res(x)
            if self.attn:
                x = self.attn[i](x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x if self.downsample is None else self.downsample(x)


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


class Encoder(nn.Module):
    """Pixels -> (B, z_channels, h, w): four stride-2 levels, attention at the lowest."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]  # highest resolution first
        self.conv_in = nn.Conv2d(3, cfg.base_channels, 3, padding=1)
        last = len(widths) - 1
        self.conv_blocks = nn.ModuleList(
            Level(
                cfg.base_channels if j == 0 else widths[j - 1],
                widths[j],
                cfg.encoder_res_blocks,
                attention=j == last,
                upsample=False,
                downsample=j != last,
            )
            for j in range(len(widths))
        )
        self.mid = nn.ModuleList(
            [ResBlock(widths[-1], widths[-1]), AttnBlock(widths[-1]), ResBlock(widths[-1], widths[-1])]
        )
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for level in self.conv_blocks:
            x = level(x)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Quantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.code_dim)

    def codebook(self) -> Tensor:
        """(V, E) L2-normalised rows: what codes stand for, in decoding and in encoding."""
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def nearest(self, z: Tensor) -> Tensor:
        """(B, E, h, w) latents -> (B, h*w) codes in raster order: the nearest codebook row to
        each L2-normalised latent, by the official squared distance (ties: the lowest code)."""
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), p=2, dim=-1)  # (B*h*w, E)
        book = self.codebook()
        d = flat.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1) - 2 * flat @ book.T  # (B*h*w, V)
        return d.argmin(dim=1).view(z.shape[0], -1)


class VQModel(nn.Module):
    def __init__(self, cfg: VQConfig = VQConfig()):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.code_dim, 1)
        self.quantize = Quantizer(cfg)
        self.post_quant_conv = nn.Conv2d(cfg.code_dim, cfg.z_channels, 1)
        self.decoder = Decoder(cfg)

    def forward(self, codes: Tensor, grid: int = 24) -> Tensor:
        """(B, h*w) codes in raster order -> (B, 3, 16h, 16w) images in about [-1, 1]."""
        z = (
            self.quantize.codebook()[codes].view(codes.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        )  # (B, E, h, w)
        return self.decoder(self.post_quant_conv(z))

    def latents(self, images: Tensor) -> Tensor:
        """(B, 3, 16h, 16w) images in [-1, 1] -> (B, E, h, w) latents before quantization."""
        return self.quant_conv(self.encoder(images))

    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, 16h, 16w) images in [-1, 1] (imageio.generation_target) -> (B, h*w) codes."""
        return self.quantize.nearest(self.latents(images))
