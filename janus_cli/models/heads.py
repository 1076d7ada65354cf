"""Small projections between the vision paths and the LLM (Janus / Janus-Pro)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MlpProjector(nn.Module):
    """`aligner` / `gen_aligner`: Linear -> GELU -> Linear, stored as `layers.0` / `layers.2`."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ImageHead(nn.Module):
    """`gen_head`: hidden state -> logits over the VQ codebook."""

    def __init__(self, hidden: int, codebook_size: int):
        super().__init__()
        self.output_mlp_projector = nn.Linear(hidden, hidden)
        self.vision_head = nn.Linear(hidden, codebook_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.vision_head(F.gelu(self.output_mlp_projector(h)))  # (B, V_img)
