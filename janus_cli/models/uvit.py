"""JanusFlow's ShallowUViT: the small ConvNeXt encoder/decoder around the LLM.

The encoder turns a latent z_t and its time t into a 24 x 24 grid of C-wide features (the LLM
tokens, after the aligner, and the long skip) plus the time embedding; the decoder turns the
LLM's 24 x 24 output and that skip back into a velocity on the latent. Parameter names mirror
the checkpoint under `vision_gen_enc_model.*` and `vision_gen_dec_model.*`.

Legend: B batch, L latent channels (4), H W latent grid (48 x 48), C channels (768 in the
encoder, 2C in the decoder after the skip concat), F = 4C ConvNeXt MLP width, h w token grid
(24 x 24), D the LLM hidden size (the conditioning width).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from janus_cli.config import FlowConfig
from janus_cli.models.llama import RMSNorm

GRN_EPS = 1e-6  # ConvNeXt-V2's constant, not the config's norm eps


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal time features, cosines first (diffusers `Timesteps(dim, True, 0)`).

    Args:
        t: (B,) flow times on the 0..1000 scale.
        dim: feature width (even).
    Returns:
        (B, dim) float32 `[cos(t f), sin(t f)]` with `f_i = exp(-ln(10000) i / (dim/2))`.
    """
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    arg = t.float()[:, None] * torch.exp(exponent)[None]  # (B, dim/2)
    return torch.cat([arg.cos(), arg.sin()], dim=-1)  # (B, dim)


def channels_last_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """Apply a last-dim norm over the channels of an NCHW tensor."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, h, w)


class GRN(nn.Module):
    """ConvNeXt-V2 global response norm on NHWC: `bias + x (weight n + 1)`."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)  # (B, 1, 1, F) L2 over h, w
        n = g / (g.mean(dim=-1, keepdim=True) + GRN_EPS)  # (B, 1, 1, F)
        return torch.addcmul(self.bias, self.weight * n + 1, x)  # (B, h, w, F)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 + RMSNorm + GELU/GRN MLP with a residual, then (scale, shift) from the cond."""

    def __init__(self, c: int, cond: int, eps: float):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = RMSNorm(c, eps)
        self.channelwise_linear_1 = nn.Linear(c, 4 * c)
        self.channelwise_norm = GRN(4 * c)
        self.channelwise_linear_2 = nn.Linear(4 * c, c)
        self.cond_embeds_mapper = nn.Linear(cond, 2 * c)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        # contiguous: a strided 4-D input sends nn.Linear to a batched matmul that copies its
        # weight once per batch row (seconds per step on CPU)
        h = self.depthwise(x).permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        h = F.gelu(self.channelwise_linear_1(self.norm(h)))  # (B, h, w, F)
        h = self.channelwise_linear_2(self.channelwise_norm(h)).permute(0, 3, 1, 2)  # (B, C, h, w)
        x = h + x
        scale, shift = self.cond_embeds_mapper(F.silu(cond)).chunk(2, dim=1)  # (B, C) each
        return torch.addcmul(shift[:, :, None, None], x, 1 + scale[:, :, None, None])


class MidBlock(nn.Module):
    def __init__(self, c: int, cond: int, blocks: int, eps: float):
        super().__init__()
        self.res_blocks = nn.ModuleList(ConvNeXtBlock(c, cond, eps) for _ in range(blocks))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x, cond)
        return x


class TimeEmbedding(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class Unpatchify(nn.Module):
    """RMSNorm, 1x1 conv to L*p*p channels, pixel shuffle: (B, C, h, w) -> (B, L, h*p, w*p)."""

    def __init__(self, c: int, out: int, patch: int, eps: float):
        super().__init__()
        self.norm = RMSNorm(c, eps)
        self.unpatch_conv = nn.Conv2d(c, out * patch * patch, 1)
        self.patch = patch

    def forward(self, x: Tensor) -> Tensor:
        x = self.unpatch_conv(channels_last_norm(self.norm, x))  # (B, L*p*p, h, w)
        return F.pixel_shuffle(x, self.patch)  # (B, L, H, W)


class ShallowUViTEncoder(nn.Module):
    """Latent + time -> token-grid features (also the decoder's skip) and time embedding."""

    def __init__(self, cfg: FlowConfig, hidden: int):
        super().__init__()
        self.time_embed = TimeEmbedding(cfg.channels, hidden)
        self.in_conv = nn.Conv2d(cfg.latent_channels, cfg.channels, cfg.patch, stride=cfg.patch)
        self.mid_block = MidBlock(cfg.channels, hidden, cfg.blocks, cfg.eps)

    def forward(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Encode the current latent.

        Args:
            z: (B, L, H, W) latent at time t, in the model's dtype.
            t: (B,) times on the 0..1000 scale (t = 0 is noise, 1000 is data).
        Returns:
            x_emb (B, C, h, w), which is also the long skip for the decoder, and
            t_emb (B, D), the LLM's time token and the ConvNeXt conditioning.
        """
        dtype = self.in_conv.weight.dtype  # the sinusoid is computed in float32
        s = timestep_embedding(t, self.in_conv.out_channels).to(dtype)  # (B, C)
        t_emb = self.time_embed(s)  # (B, D)
        x = self.in_conv(z)  # (B, C, h, w)
        return self.mid_block(x, t_emb), t_emb


class ShallowUViTDecoder(nn.Module):
    """LLM token-grid output + encoder skip + time embedding -> velocity on the latent."""

    def __init__(self, cfg: FlowConfig, hidden: int):
        super().__init__()
        self.input_norm = RMSNorm(cfg.channels, cfg.eps)
        self.mid_block = MidBlock(2 * cfg.channels, hidden, cfg.blocks, cfg.eps)
        self.out_convs = nn.ModuleList(
            [Unpatchify(2 * cfg.channels, cfg.latent_channels, cfg.patch, cfg.eps)]
        )

    def forward(self, x: Tensor, skip: Tensor, t_emb: Tensor) -> Tensor:
        """Predict the velocity.

        Args:
            x: (B, C, h, w) LLM output after the decoder aligner.
            skip: (B, C, h, w) the encoder's x_emb for the same latent.
            t_emb: (B, D) the encoder's time embedding.
        Returns:
            (B, L, H, W) velocity dz/dt (towards data), on the 0..1 time scale.
        """
        x = torch.cat([channels_last_norm(self.input_norm, x), skip], dim=1)  # (B, 2C, h, w)
        return self.out_convs[0](self.mid_block(x, t_emb))  # (B, L, H, W)
