"""The static KV cache path equals a full uncached forward; cache sharing equals per-row prefill."""

import torch

from janus_cli.config import LlamaConfig
from janus_cli.models.llama import Llama

CFG = LlamaConfig(
    hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=4, vocab_size=50
)


def tiny_llama(cfg=CFG) -> Llama:
    torch.manual_seed(0)
    model = Llama(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


@torch.inference_mode()
def test_cached_decode_equals_full_forward():
    llm = tiny_llama()
    x = torch.randn(3, 12, 64)
    llm.setup_cache(rows=3, length=16)
    full = llm(x, torch.arange(12))
    llm.setup_cache(rows=3, length=16)
    steps = [llm(x[:, :5], torch.arange(5))]
    for t in range(5, 12):
        steps.append(llm(x[:, t : t + 1], torch.tensor([t])))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_expand_cache_equals_prefilling_every_row():
    llm = tiny_llama()
    prompt, nxt = torch.randn(2, 7, 64), torch.randn(6, 1, 64)
    llm.setup_cache(rows=2, length=8)
    llm(prompt, torch.arange(7))
    llm.expand_cache(torch.tensor([0, 0, 0, 1, 1, 1]))
    shared = llm(nxt, torch.tensor([7]))
    llm.setup_cache(rows=6, length=8)
    llm(prompt.repeat_interleave(3, dim=0), torch.arange(7))
    torch.testing.assert_close(shared, llm(nxt, torch.tensor([7])), rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_key_mask_hides_positions_like_dropping_them():
    llm = tiny_llama()
    x = torch.randn(1, 6, 64)
    mask = torch.tensor([[True, False, False, True, True, True, True, True]])
    llm.setup_cache(rows=1, length=8)
    masked = llm(x, torch.arange(6), key_mask=mask)[:, -1]
    # Positions 1-2 are invisible to every query, so what they hold cannot matter.
    x2 = x.clone()
    x2[:, 1:3] = torch.randn(1, 2, 64)
    llm.setup_cache(rows=1, length=8)
    torch.testing.assert_close(llm(x2, torch.arange(6), key_mask=mask)[:, -1], masked)


@torch.inference_mode()
def test_grouped_query_attention_runs():
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=96, num_layers=1, num_heads=4, num_kv_heads=2, vocab_size=50
    )
    llm = tiny_llama(cfg)
    llm.setup_cache(rows=1, length=4)
    assert llm(torch.randn(1, 4, 64), torch.arange(4)).shape == (1, 4, 64)


@torch.inference_mode()
def test_reading_only_the_used_cache_changes_nothing():
    llm = tiny_llama()
    x = torch.randn(2, 9, 64)
    llm.setup_cache(rows=2, length=32)
    full = [llm(x[:, :5], torch.arange(5))] + [llm(x[:, t : t + 1], torch.tensor([t])) for t in range(5, 9)]
    llm.setup_cache(rows=2, length=32)
    used = [llm(x[:, :5], torch.arange(5), used=5)] + [
        llm(x[:, t : t + 1], torch.tensor([t]), used=t + 1) for t in range(5, 9)
    ]
    torch.testing.assert_close(torch.cat(used, 1), torch.cat(full, 1), rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_left_padding_computes_what_each_row_computes_alone():
    llm = tiny_llama()
    short, long = torch.randn(1, 4, 64), torch.randn(1, 7, 64)
    steps = torch.randn(2, 3, 64)  # three decode tokens per row

    def alone(prompt, extra):
        llm.setup_cache(rows=1, length=10)
        t = prompt.shape[1]
        out = [llm(prompt, torch.arange(t), used=t)[:, -1]]
        out += [llm(extra[:, i : i + 1], torch.tensor([t + i]), used=t + i + 1)[:, -1] for i in range(3)]
        return torch.cat(out)

    garbage = torch.full((1, 3, 64), 1e3)  # what the padding holds must not matter
    batch = torch.cat([torch.cat([garbage, short], 1), long])  # (2, 7, C), left padded
    pad = torch.tensor([3, 0])
    llm.setup_cache(rows=2, length=10)
    padded = [llm(batch, torch.arange(7), used=7, pad=pad)[:, -1]]
    padded += [llm(steps[:, i : i + 1], torch.tensor([7 + i]), used=8 + i, pad=pad)[:, -1] for i in range(3)]
    padded = torch.stack(padded, 1)  # (2, 4, C)
    torch.testing.assert_close(padded[0], alone(short, steps[:1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded[1], alone(long, steps[1:]), rtol=1e-5, atol=1e-5)
