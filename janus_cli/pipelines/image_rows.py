"""Continuous batching of Janus / Janus-Pro images: images join and leave a running batch.

Each image has a conditional row and, with guidance, an unconditional one, in one `RowCache`.
An image's prompt is prefilled alone (as `generate_image_tokens` prefills a single prompt), its
rows join at the shared slot, and from then on every token step is one forward of all rows.
Images that agree on `GenerateSettings.batch_key` form a group sampled by one sampler over their
own generators (`image_seed(k)`: seed + k), so an image gets the codes it gets alone whatever
shares its steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from janus_cli.imageio import to_uint8
from janus_cli.pipelines.rows import RowCache, prefill
from janus_cli.prompts import make_uncond_ids
from janus_cli.runtime import make_generator
from janus_cli.sampling.logits import Sampler, apply_cfg, make_sampler


@dataclass(eq=False)
class ImageRow:
    """One image in the batch (its cond row, and its uncond row with guidance)."""

    job: Any  # the scheduler's job: .settings, .emit(event), .cancelled, .image_done(...)
    k: int  # its place in the job's request
    generator: torch.Generator
    codes: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Group:
    """Images that share one CFG scale and one sampler."""

    cfg: float
    images: list[ImageRow]
    cond: Tensor  # (n,) rows
    uncond: Tensor | None  # (n,) rows, None without guidance
    sampler: Sampler


class ImageRows:
    """The running image batch of one Janus model."""

    def __init__(self, session, max_images: int):
        self.session = session
        self.model = session.model
        self.steps = session.config.image_tokens
        self.cache = RowCache(self.model.language_model, 2 * max_images)
        self.rows: list[tuple[ImageRow, bool]] = []  # per cache row: its image, and whether uncond
        self.logits: Tensor | None = None  # (R, V_img) of the rows, ready to sample
        self.groups: list[Group] = []

    @property
    def images(self) -> list[ImageRow]:
        return [img for img, uncond in self.rows if not uncond]

    def jobs(self) -> set:
        return {img.job for img, _ in self.rows}

    @torch.inference_mode()
    def join(self, job, ids: list[int], ks: list[int]) -> None:
        """Prefill JOB's prompt IDS alone and add its images KS to the batch."""
        model, s = self.model, job.settings
        guided = s.cfg != 1.0
        distinct = [ids, make_uncond_ids(ids, self.session.tokenizer.special.pad)] if guided else [ids]
        embeds = model.language_model.model.embed_tokens(
            torch.tensor(distinct, device=self.session.device)
        )  # (P, L, C)
        hidden, kc, vc = prefill(model.language_model, embeds)
        index = [g for g in range(len(distinct)) for _ in ks]  # [cond x n; uncond x n]
        logits = model.image_logits(hidden[torch.tensor(index, device=hidden.device)])  # (P*n, V_img)
        self.cache.reserve(len(ids), len(index), self.steps - 1)
        self.cache.join(kc, vc, index, self.steps - 1)
        images = [ImageRow(job, k, make_generator(s.image_seed(k))) for k in ks]  # seed + k, as alone
        self.rows += [(img, g == 1) for g in range(len(distinct)) for img in images]
        self.logits = logits if self.logits is None else torch.cat([self.logits, logits])
        self.groups = []

    def drop(self, leaving: set[ImageRow]) -> None:
        """Take the rows of the LEAVING images out of the batch."""
        if not leaving:
            return
        order = self.cache.drop({r for r, (img, _) in enumerate(self.rows) if img in leaving})
        self.rows = [self.rows[i] for i in order]
        if self.logits is not None:
            self.logits = self.logits[torch.tensor(order, dtype=torch.long)] if order else None
        self.groups = []
        if not self.rows:
            self.release()

    def release(self) -> None:
        self.cache.release()
        self.rows, self.logits, self.groups = [], None, []

    def _regroup(self) -> None:
        by_key: dict[tuple, list[int]] = {}
        for r, (img, uncond) in enumerate(self.rows):
            if not uncond:
                by_key.setdefault(img.job.settings.batch_key(), []).append(r)
        uncond_row = {img: r for r, (img, uncond) in enumerate(self.rows) if uncond}
        self.groups = []
        for (cfg, temperature, top_k, top_p), cond in by_key.items():
            images = [self.rows[r][0] for r in cond]
            uncond = torch.tensor([uncond_row[img] for img in images]) if cfg != 1.0 else None
            sampler = make_sampler(temperature, top_k, top_p, [img.generator for img in images])
            self.groups.append(Group(cfg, images, torch.tensor(cond), uncond, sampler))

    @torch.inference_mode()
    def step(self) -> list[ImageRow]:
        """Sample one code for every image, then feed the codes of those not finished.

        Returns the images that now have all their codes (still in the batch: decode them,
        then `drop` them)."""
        if not self.groups:
            self._regroup()
        logits = self.logits
        for g in self.groups:
            lg = logits[g.cond]  # (n, V_img)
            if g.uncond is not None:
                lg = apply_cfg(lg, logits[g.uncond], g.cfg)
            for img, code in zip(g.images, g.sampler(lg).tolist(), strict=True):
                img.codes.append(code)
        return [img for img in self.images if len(img.codes) == self.steps]

    @torch.inference_mode()
    def forward(self) -> None:
        """Feed every row its image's last code; the next logits wait for `step`."""
        fed = torch.tensor([img.codes[-1] for img, _ in self.rows], device=self.session.device)  # (R,)
        hidden = self.cache.step(self.model.code_embeds(fed[:, None]))  # (R, C)
        self.logits = self.model.image_logits(hidden)  # (R, V_img)

    def decode(self, img: ImageRow):
        """(H, W, 3) uint8 pixels of a finished image, decoded alone (its pixels depend on its
        codes only)."""
        codes = torch.tensor([img.codes], device=self.session.device)  # (1, 576)
        return to_uint8(self.model.decode_codes(codes))[0]
