"""Janus / Janus-Pro: the LLM plus a SigLIP understanding path and a VQ generation path.

Attribute names mirror the checkpoint's top-level prefixes. Nothing here samples: the
methods map ids/pixels/codes to embeddings, hidden states to logits, codes to pixels.

Legend: B rows, T tokens, C LLM hidden, V_img codebook size (16384).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from janus_cli.config import JanusConfig
from janus_cli.models.heads import ImageHead, MlpProjector
from janus_cli.models.llama import Llama
from janus_cli.models.siglip import VisionTower
from janus_cli.models.vq import VQConfig, VQModel


def embed_with_images(
    model: nn.Module, ids: Tensor, pixels: Tensor | None, image_mask: Tensor | None
) -> Tensor:
    """Token embeddings with the image slots overwritten, in order, by image features.

    Shared by Janus and JanusFlow, which differ only in `image_features` and `image_slots`.

    Args:
        ids: (B, T) token ids. pixels: (n, 3, 384, 384) for all images of the batch, in
        reading order. image_mask: (B, T) bool, True at the image slots (n * slots per image).
    Returns:
        (B, T, C) embeddings.
    """
    embeds = model.language_model.model.embed_tokens(ids)
    if pixels is not None and pixels.shape[0]:
        feats = model.image_features(pixels.to(embeds.dtype))  # (n, slots, C)
        embeds[image_mask] = feats.flatten(0, 1)  # (n * slots, C) into the slots in order
    return embeds


class JanusModel(nn.Module):
    TOKEN_STEP = ("language_model", "gen_head", "gen_aligner")  # what runs a few rows at a time
    # What each kind of work reads besides the LLM's embeddings and blocks: a session for one kind
    # never loads the other's (the text head alone is 0.4 GB of bf16 for Janus-Pro-1B).
    PARTS = {
        "understanding": ("vision_model", "aligner", "language_model.lm_head"),
        "generation": ("gen_vision_model", "gen_aligner", "gen_head", "gen_embed"),
        "encoding": ("gen_vision_model.encoder", "gen_vision_model.quant_conv"),  # images -> codes
    }
    ON_REQUEST = ("encoding",)  # parts loaded only when named (training), never by default

    def __init__(self, cfg: JanusConfig):
        super().__init__()
        c = cfg.llm.hidden_size
        self.cfg = cfg
        self.vision_model = VisionTower(cfg.siglip)
        self.aligner = MlpProjector(cfg.siglip.width, c)
        self.gen_vision_model = VQModel(VQConfig(codebook_size=cfg.image_token_size, code_dim=cfg.code_dim))
        self.gen_aligner = MlpProjector(cfg.code_dim, c)
        self.gen_head = ImageHead(c, cfg.image_token_size)
        self.gen_embed = nn.Embedding(cfg.image_token_size, cfg.code_dim)
        self.language_model = Llama(cfg.llm)

    def image_features(self, pixels: Tensor) -> Tensor:
        """(B, 3, 384, 384) -> (B, 576, C): what replaces the `<image_placeholder>` embeddings."""
        return self.aligner(self.vision_model(pixels))

    def image_slots(self, ids: Tensor, special) -> Tensor:
        """(B, T) bool: the positions image features go to (the 576 placeholders per image)."""
        return ids == special.image

    def embed_prompt(self, ids: Tensor, pixels: Tensor | None, image_mask: Tensor | None) -> Tensor:
        return embed_with_images(self, ids, pixels, image_mask)

    def code_embeds(self, codes: Tensor) -> Tensor:
        """(B, T) image codes -> (B, T, C) LLM inputs (own table, not the VQ codebook)."""
        return self.gen_aligner(self.gen_embed(codes))

    def image_logits(self, hidden: Tensor) -> Tensor:
        """(B, C) last hidden state -> (B, V_img) fp32 logits over image codes."""
        return self.gen_head(hidden).float()

    @torch.inference_mode()
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, 3, 384, 384) generation targets in [-1, 1] (imageio.generation_target) -> (B, 576)
        codes; needs the "encoding" part loaded."""
        return self.gen_vision_model.encode(images)

    @torch.inference_mode()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """(B, 576) codes -> (B, 3, 384, 384) images in about [-1, 1]."""
        grid = int(codes.shape[1] ** 0.5)
        return self.gen_vision_model(codes, grid)
