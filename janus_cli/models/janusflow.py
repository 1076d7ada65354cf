"""JanusFlow: the LLM plus a SigLIP understanding path and a rectified-flow generation path.

Attribute names mirror the checkpoint's top-level prefixes. Nothing here samples or
integrates: the methods map ids/pixels to embeddings, a latent and its time to LLM tokens, and
the LLM's output over those tokens to a velocity. The Euler loop is `sampling.flow`.

Legend: B rows, T tokens, C LLM hidden (2048), E ShallowUViT width (768), L latent channels
(4), H W latent grid (48 x 48), h w token grid (24 x 24).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from janus_cli.config import FlowConfig, JanusConfig
from janus_cli.models.janus import embed_with_images
from janus_cli.models.llama import Llama, RMSNorm
from janus_cli.models.siglip import VisionTower
from janus_cli.models.uvit import ShallowUViTDecoder, ShallowUViTEncoder


class JanusFlowModel(nn.Module):
    TOKEN_STEP = ("language_model",)  # a few rows at a time for text answers; many in flow steps
    # What each kind of work reads besides the LLM's embeddings and blocks: a session for one kind
    # never loads the other's.
    PARTS = {
        "understanding": (
            "vision_und_enc_model",
            "vision_und_enc_aligner",
            "beg_of_und_embed",
            "language_model.lm_head",
        ),
        "generation": (
            "vision_gen_enc_model",
            "vision_gen_enc_aligner",
            "vision_gen_dec_aligner_norm",
            "vision_gen_dec_aligner",
            "vision_gen_dec_model",
        ),
    }

    def __init__(self, cfg: JanusConfig):
        super().__init__()
        c = cfg.llm.hidden_size
        flow = cfg.flow or FlowConfig()
        self.cfg = cfg
        self.flow_cfg = flow
        self.vision_und_enc_model = VisionTower(cfg.siglip)
        self.vision_und_enc_aligner = nn.Linear(cfg.siglip.width, c)
        self.beg_of_und_embed = nn.Parameter(torch.zeros(1, c))
        self.vision_gen_enc_model = ShallowUViTEncoder(flow, c)
        self.vision_gen_enc_aligner = nn.Linear(flow.channels, c)
        self.language_model = Llama(cfg.llm)
        self.vision_gen_dec_aligner_norm = RMSNorm(c, eps=cfg.llm.rms_norm_eps)
        self.vision_gen_dec_aligner = nn.Linear(c, flow.channels)
        self.vision_gen_dec_model = ShallowUViTDecoder(flow, c)

    # --- understanding -------------------------------------------------------------------

    def image_features(self, pixels: Tensor) -> Tensor:
        """(B, 3, 384, 384) -> (B, 577, C): `beg_of_und_embed`, then the aligned SigLIP patches."""
        feats = self.vision_und_enc_aligner(self.vision_und_enc_model(pixels))  # (B, 576, C)
        beg = self.beg_of_und_embed.to(feats.dtype).expand(feats.shape[0], 1, -1)  # (B, 1, C)
        return torch.cat([beg, feats], dim=1)  # (B, 577, C)

    def image_slots(self, ids: Tensor, special) -> Tensor:
        """(B, T) bool: the 577 slots per image (`<begin_of_image>` and the 576 placeholders)."""
        return (ids == special.image) | (ids == special.boi)

    def embed_prompt(self, ids: Tensor, pixels: Tensor | None, image_mask: Tensor | None) -> Tensor:
        return embed_with_images(self, ids, pixels, image_mask)

    # --- generation ----------------------------------------------------------------------

    def encode_latent(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The LLM's view of latent Z at time T.

        Args:
            z: (B, L, H, W) latents in the model dtype.
            t: (B,) times on the 0..1000 scale (0 = noise, 1000 = data).
        Returns:
            tokens (B, h*w, C) for the LLM (token = row * w + col), t_emb (B, C) (the time
            token and the decoder's conditioning), skip (B, E, h, w) for the decoder.
        """
        skip, t_emb = self.vision_gen_enc_model(z, t)  # (B, E, h, w), (B, C)
        tokens = self.vision_gen_enc_aligner(skip.flatten(2).transpose(1, 2))  # (B, h*w, C)
        return tokens, t_emb, skip

    def decode_velocity(self, hidden: Tensor, skip: Tensor, t_emb: Tensor) -> Tensor:
        """The velocity from the LLM's final-normed hidden states over the latent tokens.

        Args:
            hidden: (B, h*w, C) hidden states at the latent-token positions.
            skip: (B, E, h, w) and t_emb (B, C) from `encode_latent` of the same latent.
        Returns:
            (B, L, H, W) velocity dz/dt on the 0..1 time scale (noise -> data).
        """
        b = hidden.shape[0]
        h, w = skip.shape[-2:]
        x = self.vision_gen_dec_aligner(self.vision_gen_dec_aligner_norm(hidden))  # (B, h*w, E)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # (B, E, h, w)
        return self.vision_gen_dec_model(x, skip, t_emb)  # (B, L, H, W)
