"""The peers janus-cli is timed against, on the very same weight tensors: the official Janus
algorithm written against transformers' `LlamaForCausalLM` (generation_inference.py's loop and
the describe path's greedy `generate`), transformers' own `JanusForConditionalGeneration` and
`JanusVQVAE`, and diffusers' `AutoencoderKL`. They need `pip install -e ".[bench]"`."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.logits import apply_cfg


def peer_model(model):
    """transformers' LlamaForCausalLM sharing our weight tensors (names are identical)."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    c = model.cfg.llm
    hf_cfg = HFConfig(
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        vocab_size=c.vocab_size,
        rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta,
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=False,  # Janus's text head is its own tensor (the default moved across releases)
    )
    with torch.device("meta"):
        peer = LlamaForCausalLM(hf_cfg)
    peer.load_state_dict(model.language_model.state_dict(), assign=True, strict=False)
    if model.language_model.lm_head is None:  # loaded for generation only: the image loop reads no text head
        peer.lm_head = None  # (left on meta, `.to` below would raise)
    peer.model.rotary_emb = type(peer.model.rotary_emb)(hf_cfg)  # its inv_freq buffer was on meta
    return peer.to(model.language_model.model.embed_tokens.weight.device).eval()  # inv_freq too


@torch.inference_mode()
def peer_codes(model, peer, ids: list[int], n: int, steps: int) -> Iterator[Tensor]:
    """The official generation loop (generation_inference.py): interleaved rows, growing cache."""
    from transformers import DynamicCache

    device = peer.model.embed_tokens.weight.device
    rows = torch.tensor([ids, make_uncond_ids(ids, 0)] * n, device=device)  # (2N, L) cond/uncond interleaved
    embeds = peer.model.embed_tokens(rows)
    cache = DynamicCache()
    gen = torch.Generator(device).manual_seed(0)
    for _ in range(steps):
        hidden = peer.model(inputs_embeds=embeds, use_cache=True, past_key_values=cache).last_hidden_state
        logits = model.gen_head(hidden[:, -1])
        guided = apply_cfg(logits[0::2], logits[1::2], 5.0)
        codes = torch.multinomial(guided.float().softmax(-1), 1, generator=gen)  # (N, 1)
        yield codes[:, 0]
        embeds = model.gen_aligner(model.gen_embed(codes.repeat_interleave(2, dim=0)))  # (2N, 1, C)


@torch.inference_mode()
def peer_text(peer, embeds: Tensor, tokens: int) -> Iterator[Tensor]:
    """transformers' greedy `generate` loop over inputs_embeds (the official describe path):
    DynamicCache, logits of the last position only."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for _ in range(tokens):
        out = peer(inputs_embeds=embeds, past_key_values=cache, use_cache=True, logits_to_keep=1)
        ids = out.logits[:, -1].argmax(-1)  # (1,)
        yield ids
        embeds = peer.model.embed_tokens(ids[:, None])  # (1, 1, C)


def hf_janus_model(model):
    """transformers' own `JanusForConditionalGeneration` (the deepseek-community port) on our
    LLM, image head, aligner and code embeddings, renamed by janus convert's own table. The VQ
    stays on meta (an image-token step never runs it); the vision tower is allocated but left
    uninitialised, because `generate` takes the model's device and dtype from it."""
    from transformers import GenerationConfig, JanusForConditionalGeneration
    from transformers import JanusConfig as HFJanusConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from janus_cli.checkpoints.transformers_layout import map_key

    c = model.cfg.llm
    text = dict(
        model_type="llama",
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        vocab_size=c.vocab_size,
        rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta,
        max_position_embeddings=c.max_position_embeddings,
    )
    cfg = HFJanusConfig(
        text_config=text, vq_config=dict(projection_dim=c.hidden_size, image_token_embed_dim=c.hidden_size)
    )
    with torch.device("meta"):
        peer = JanusForConditionalGeneration(cfg).to(next(model.parameters()).dtype)
    peer.model.vision_model.to_empty(device="cpu")
    ours = dict(model.named_parameters())
    step = ("model.language_model.", "model.generation_")  # what an image-token step reads
    shared = {k: ours[map_key(k)[0]] for k, _ in peer.named_parameters() if k.startswith(step)}
    peer.load_state_dict(shared, strict=False, assign=True)
    # its buffer was on meta
    peer.model.language_model.rotary_emb = LlamaRotaryEmbedding(peer.config.text_config)
    # the published generation_config.json of deepseek-community/Janus-Pro-1B
    peer.generation_config = GenerationConfig(
        bos_token_id=100000,
        eos_token_id=100001,
        pad_token_id=100015,
        generation_kwargs={"boi_token_id": 100016},
        guidance_scale=5.0,
        do_sample=True,
    )
    return peer.eval()


def vq_peer(model):
    """transformers' `JanusVQVAE` (the deepseek-community port) on MODEL's VQ weights, renamed by
    janus convert's own table; the encoder side stays on meta: decoding never runs it."""
    from transformers import JanusVQVAE, JanusVQVAEConfig

    from janus_cli.checkpoints.transformers_layout import map_key

    with torch.device("meta"):
        peer = JanusVQVAE(JanusVQVAEConfig(num_patches=24))
    ours = dict(model.named_parameters())
    mapped = {
        k: ours[map_key("model.vqmodel." + k)[0]]
        for k in peer.state_dict()
        if not k.startswith(("encoder.", "quant_conv."))
    }
    peer.load_state_dict(mapped, strict=False, assign=True)
    return peer.eval()


def vae_peer(ours, config: dict):
    """diffusers' `AutoencoderKL` of the SDXL-VAE CONFIG on the weights of OURS (a VAEDecoder;
    the names are identical). Its encoder stays on meta."""
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        peer = AutoencoderKL(**{k: v for k, v in config.items() if not k.startswith("_")})
    peer.load_state_dict(dict(ours.state_dict()), strict=False, assign=True)
    return peer.eval()
