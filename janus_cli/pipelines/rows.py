"""A KV cache whose rows share one write slot, so rows at different progress step together.

Row r's tokens sit at cache slots [pad[r], slot). A request joins at the shared slot s with its
L-token prompt left padded (pad = s - L): that is `Llama.forward`'s left-padding contract (RoPE
positions count from pad[r], slots before it are never attended), so one forward of (R, 1, C)
steps every row, each computing what it would alone. A cached key carries the RoPE of its
position relative to its row's pad, so moving a row's slots together with its pad is exact:
that is how a prompt prefilled alone joins, and how the cache compacts when slots run out.

Active rows are a prefix of the allocated rows; forwards run on that prefix's view only.

Legend: R active rows, Rmax allocated rows, S slots, Hkv kv heads, D head dim, P prefill rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from janus_cli.models.llama import KVCache

GROW = 128  # slots are allocated in multiples of this, so a cache grows a few times, not per join


@torch.inference_mode()
def prefill(llm, embeds: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run prompt EMBEDS (P, L, C) alone in a cache of exactly L slots, as a single request's
    run would (no padding). Returns the last hidden states (P, C) and each layer's keys and
    values (P, Hkv, L, D), for `RowCache.join`."""
    p, length, _ = embeds.shape
    llm.setup_cache(rows=p, length=length)
    hidden = llm(embeds, torch.arange(length, device=embeds.device), used=length)[:, -1]  # (P, C)
    caches = [layer.self_attn.cache for layer in llm.model.layers]
    ks, vs = [c.k for c in caches], [c.v for c in caches]
    llm.free_cache()
    return hidden, ks, vs


class RowCache:
    """Rows of one running batch: their keys/values, left pads and the shared write slot."""

    def __init__(self, llm, rows: int):
        self.llm = llm
        self.capacity = max(1, rows)  # rows allocated when the cache is (re)made
        self.k: list[Tensor] = []  # per layer (Rmax, Hkv, S, D)
        self.v: list[Tensor] = []
        self.rows = 0  # active rows: the prefix [0, rows)
        self.slot = 0  # where every row's next token goes
        self.pads: list[int] = []  # per active row
        self.left: list[int] = []  # per active row: forwards it still needs
        self._state = None  # the llm cache state of the current view (None: remake)
        self._pad = None  # (R,) pads as a tensor

    @property
    def length(self) -> int:
        return self.k[0].shape[2] if self.k else 0

    def reserve(self, prompt: int, rows: int, need: int) -> None:
        """Make room for ROWS new rows with a PROMPT-token prompt that need NEED more forwards:
        move the shared slot (every row's slots and pad with it) to where the prompt fits, and
        grow the cache when the slots or rows run out."""
        needs = max([need, *self.left])
        target = self.slot
        if not self.rows:
            target = prompt  # nothing to move
        elif target < prompt or target + needs > self.length:
            target = max(prompt, self.slot - min(self.pads))  # compact: no row keeps spare slots in front
        length = max(self.length, -(-(target + needs) // GROW) * GROW)
        capacity = self.capacity
        if self.rows + rows > capacity:  # more rows than planned: double, so joins rarely copy
            capacity = max(2 * capacity, self.rows + rows)
        if length > self.length or capacity > (self.k[0].shape[0] if self.k else 0):
            self._grow(capacity, length)
        if self.rows and target != self.slot:
            self._shift(target - self.slot)
        self.slot = target

    def _grow(self, rows: int, length: int) -> None:
        cfg, w = self.llm.cfg, self.llm.model.embed_tokens.weight
        shape = (rows, cfg.num_kv_heads, length, cfg.head_dim)
        old_k, old_v, r, s = self.k, self.v, self.rows, min(self.slot, self.length)
        self.k = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in old_k or self.llm.model.layers]
        self.v = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in old_v or self.llm.model.layers]
        for new, old in zip(self.k + self.v, old_k + old_v, strict=False):
            new[:r, :, :s] = old[:r, :, :s]
        self.capacity = rows
        self.llm.setup_cache(rows=0, length=length)  # only for its RoPE and mask tables of LENGTH slots
        _, cos, sin, causal, _ = self.llm.cache_state()
        self._tables = (cos, sin, causal, length)
        self._state = None

    def _shift(self, delta: int) -> None:
        """Move every active row's slots by DELTA (pads move with them)."""
        r, s = self.rows, self.slot
        lo = min(self.pads)  # nothing before the smallest pad is ever read
        for x in self.k + self.v:
            x[:r, :, lo + delta : s + delta] = x[:r, :, lo:s].clone()
        self.pads = [p + delta for p in self.pads]
        self._pad = None

    def join(self, ks: list[Tensor], vs: list[Tensor], index: list[int], need: int) -> list[int]:
        """Add one row per INDEX entry, copying prefilled row INDEX[i] of KS/VS (per layer
        (P, Hkv, L, D)) to slots [slot - L, slot); each needs NEED more forwards. Call
        `reserve` first. Returns the new rows."""
        length, r, n = ks[0].shape[2], self.rows, len(index)
        src = torch.tensor(index, device=ks[0].device)
        for dst, part in zip(self.k + self.v, ks + vs, strict=True):
            dst[r : r + n, :, self.slot - length : self.slot] = part.index_select(0, src)
        self.rows += n
        self.pads += [self.slot - length] * n
        self.left += [need] * n
        self._state, self._pad = None, None
        return list(range(r, r + n))

    def drop(self, rows: set[int]) -> list[int]:
        """Free ROWS: the last active rows move into the holes, so the active rows stay a
        prefix. Returns the new order: new row i holds what old row order[i] held."""
        keep = [r for r in range(self.rows) if r not in rows]
        holes = [r for r in range(len(keep)) if r in rows]
        movers = [r for r in keep if r >= len(keep)]
        order = list(range(len(keep)))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        if holes:
            dst, src = torch.tensor(holes), torch.tensor(movers)
            for x in self.k + self.v:
                x[dst] = x[src]
        self.rows = len(keep)
        self.pads = [self.pads[i] for i in order]
        self.left = [self.left[i] for i in order]
        self._state, self._pad = None, None
        return order

    @torch.inference_mode()
    def step(self, embeds: Tensor) -> Tensor:
        """One token per active row: EMBEDS (R, 1, C) at the shared slot -> hidden (R, C)."""
        llm, r, s = self.llm, self.rows, self.slot
        if self._state is None:
            cos, sin, causal, length = self._tables
            caches = []
            for k, v in zip(self.k, self.v, strict=True):
                cache = KVCache(0, 1, 0, 1, k.dtype, k.device)
                cache.k, cache.v = k[:r], v[:r]  # views: the kernels write through them
                caches.append(cache)
            self._state = (tuple(caches), cos, sin, causal, length)
        if self._pad is None:
            self._pad = torch.tensor(self.pads, device=embeds.device)  # (R,)
        llm.use_cache_state(self._state)
        pos = torch.tensor([s], device=embeds.device)  # (1,)
        hidden = llm(embeds, pos, used=s + 1, pad=self._pad)[:, -1]  # (R, C)
        self.slot += 1
        self.left = [n - 1 for n in self.left]
        return hidden

    def release(self) -> None:
        """Drop the tensors (the batch is empty)."""
        self.k, self.v, self.rows, self.slot, self.pads, self.left = [], [], 0, 0, [], []
        self._state, self._pad = None, None
