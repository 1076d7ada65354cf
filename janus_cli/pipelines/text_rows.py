"""Continuous batching of answers (chat / describe): one row per answer, in its own RowCache.

A conversation is prefilled alone (SigLIP features in its image slots, as
`image_to_text.reply` does), joins the running text rows at the shared slot, and is sampled
by its own sampler and generator (seed), so its answer is the one `reply` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from janus_cli.imageio import preprocess
from janus_cli.pipelines.batching import seed_for
from janus_cli.pipelines.rows import RowCache, prefill
from janus_cli.runtime import make_generator
from janus_cli.sampling.logits import Sampler, make_sampler
from janus_cli.tokenizer import Detokenizer


@dataclass(eq=False)
class TextRow:
    job: Any  # the scheduler's job: .settings (DescribeSettings), .ids, .max_tokens, .images
    sampler: Sampler
    text: Detokenizer  # the text streamed so far
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop" or "length" once done


class TextRows:
    """The running answers of one model."""

    def __init__(self, session):
        self.session = session
        self.model = session.model
        self.eos = session.tokenizer.special.eos
        # one row to start with: answers can be long, so their cache rows are made as they come
        self.cache = RowCache(self.model.language_model, 1)
        self.rows: list[TextRow] = []
        self.logits: Tensor | None = None  # (R, V) ready to sample

    def jobs(self) -> set:
        return {row.job for row in self.rows}

    @torch.inference_mode()
    def join(self, job) -> None:
        """Prefill JOB's conversation alone and add its answer row."""
        s, model, tok = job.settings, self.model, self.session.tokenizer
        ids = torch.tensor([job.ids], device=self.session.device)  # (1, T)
        pixels = [preprocess(img, self.session.preprocess) for img in job.images]
        pixels = torch.stack(pixels).to(self.session.device) if pixels else None  # (images, 3, H, W)
        embeds = model.embed_prompt(ids, pixels, model.image_slots(ids, tok.special))  # (1, T, C)
        hidden, kc, vc = prefill(model.language_model, embeds)
        logits = model.language_model.logits(hidden)  # (1, V)
        self.cache.reserve(len(job.ids), 1, job.max_tokens - 1)
        self.cache.join(kc, vc, [0], job.max_tokens - 1)
        sampler = make_sampler(
            s.temperature, None, s.top_p, [make_generator(seed_for(s.seed, 0))]
        )  # reply's answer 0
        self.rows.append(TextRow(job, sampler, Detokenizer(tok)))
        self.logits = logits if self.logits is None else torch.cat([self.logits, logits])

    def drop(self, leaving: set[TextRow]) -> None:
        if not leaving:
            return
        order = self.cache.drop({r for r, row in enumerate(self.rows) if row in leaving})
        self.rows = [self.rows[i] for i in order]
        if self.logits is not None:
            self.logits = self.logits[torch.tensor(order, dtype=torch.long)] if order else None
        if not self.rows:
            self.release()

    def release(self) -> None:
        self.cache.release()
        self.rows, self.logits = [], None

    @torch.inference_mode()
    def step(self) -> list[tuple[TextRow, str]]:
        """Sample one token per row. Returns (row, new text) for rows whose decoded text grew by
        whole characters, or that ended with text held back; a row that ends gets its `finish` set."""
        out = []
        for row, logits in zip(self.rows, self.logits.split(1), strict=True):
            t = int(row.sampler(logits)[0])
            if t == self.eos:
                row.finish = "stop"
            else:
                row.tokens.append(t)
                if len(row.tokens) == row.job.max_tokens:
                    row.finish = "length"
            piece = row.text.flush(row.tokens) if row.finish else row.text.step(row.tokens)
            if piece:
                out.append((row, piece))
        return out

    @torch.inference_mode()
    def forward(self) -> None:
        """Feed every row its last token; the next logits wait for `step`."""
        llm = self.model.language_model
        fed = torch.tensor([[row.tokens[-1]] for row in self.rows], device=self.session.device)  # (R, 1)
        self.logits = llm.logits(self.cache.step(llm.model.embed_tokens(fed)))  # (R, V)
