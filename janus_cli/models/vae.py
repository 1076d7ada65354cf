"""The SDXL-VAE decoder (diffusers `AutoencoderKL` layout): JanusFlow latents -> pixels.

Only the decode path is built. Parameter names mirror the diffusers keys under
`post_quant_conv.*` and `decoder.*`, so the checkpoint loads as-is; parsing `config.json` and
loading (which drops the encoder half and accepts the old attention names) live in
`janus_cli.checkpoints.vae`.

Legend: B images, C channels, H W spatial grid, T = H*W attention positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6  # every GroupNorm of the SDXL VAE (diffusers' norm_eps)


@dataclass(frozen=True)
class VAEConfig:
    """The fields of a diffusers AutoencoderKL `config.json` that size the decoder."""

    block_out_channels: tuple[int, ...]  # encoder order; the decoder walks it reversed
    layers_per_block: int
    latent_channels: int
    norm_num_groups: int
    out_channels: int
    scaling_factor: float


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a 1x1 shortcut when the width changes."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, EPS)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out, EPS)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.conv_shortcut(x) + h


class Attention(nn.Module):
    """Single-head self-attention over all H*W positions, with a residual."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, EPS)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])  # diffusers' key is `to_out.0`

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.group_norm(x).flatten(2).transpose(1, 2)  # (B, T, C)
        q, k, v = (p(n)[:, None] for p in (self.to_q, self.to_k, self.to_v))  # (B, 1, T, C)
        y = F.scaled_dot_product_attention(q, k, v)[:, 0]  # (B, T, C)
        return x + self.to_out[0](y).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


class MidBlock(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c, c, groups), ResnetBlock(c, c, groups)])
        self.attentions = nn.ModuleList([Attention(c, groups)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class UpBlock(nn.Module):
    """`layers_per_block + 1` ResNets, then (except at full resolution) a x2 upsampler."""

    def __init__(self, c_in: int, c_out: int, resnets: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(c_in if i == 0 else c_out, c_out, groups) for i in range(resnets)
        )
        self.upsamplers = nn.ModuleList([Upsample(c_out)] if upsample else [])

    def forward(self, x: Tensor) -> Tensor:
        for layer in [*self.resnets, *self.upsamplers]:
            x = layer(x)
        return x


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = cfg.block_out_channels[::-1]  # up_blocks[0] runs at the lowest resolution
        g = cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, chans[0], 3, padding=1)
        self.mid_block = MidBlock(chans[0], g)
        n = cfg.layers_per_block + 1
        self.up_blocks = nn.ModuleList(
            UpBlock(chans[max(i - 1, 0)], c, n, g, upsample=i < len(chans) - 1) for i, c in enumerate(chans)
        )
        self.conv_norm_out = nn.GroupNorm(g, chans[-1], EPS)
        self.conv_out = nn.Conv2d(chans[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(z))  # (B, C, h, w)
        for block in self.up_blocks:
            x = block(x)  # (B, C', 2h, 2w) until the last block
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (B, 3, H, W)


class VAEDecoder(nn.Module):
    """`post_quant_conv` + `decoder` of an AutoencoderKL."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg)

    def decode(self, z: Tensor) -> Tensor:
        """Decode flow latents into images.

        Args:
            z: (B, 4, h, w) latents as the sampler produces them (not yet divided by the
                scaling factor; this method does that).
        Returns:
            (B, 3, 8h, 8w) images, nominally in [-1, 1] (not clipped), in the model's dtype.
        """
        x = (z / self.cfg.scaling_factor).to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(x))
