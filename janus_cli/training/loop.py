"""The training loop, top to bottom: data -> forward -> loss -> backward -> step -> event.

`train` is a generator of events (the front end owns the bar and the plots, as with the
samplers). Everything random is a function of the seed and the sample's place in the run (the
data order and prompt dropout of epoch e from Generator(seed + e), LoRA dropout from the
micro-batch's number), so a run resumed from a saved state computes what the uninterrupted run
computes, to the bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from janus_cli.training import forward
from janus_cli.training.data import GenerateExample
from janus_cli.training.lora import set_dropout_seed
from janus_cli.training.losses import IGNORE, shifted_targets, token_loss


@dataclass(frozen=True)
class Settings:
    task: str  # generate or describe
    steps: int  # optimizer steps in the whole run
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    warmup: int = 0
    seed: int = 0
    prompt_dropout: float = 0.1  # generate: the share of samples trained on the unconditional prompt
    save_every: int = 0  # 0: only at the end
    checkpointing: bool = True
    clip: float = 1.0


@dataclass(frozen=True)
class Step:
    step: int  # optimizer steps done
    steps: int
    loss: float  # mean over the step's samples
    lr: float
    samples_per_s: float


@dataclass(frozen=True)
class Save:
    """A point to write the adapter and the resumable state (the front end writes them)."""

    step: int
    final: bool  # the run's last step
    stopped: bool = False  # stopped early (request_stop, Ctrl-C)


def lr_at(step: int, s: Settings) -> float:
    """Linear warmup over S.warmup steps, then cosine from S.lr down to S.lr / 10."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def sample_order(n: int, index: int, s: Settings) -> tuple[int, bool]:
    """The example and prompt-dropout draw of the run's INDEX-th sample (of N examples)."""
    epoch, place = divmod(index, n)
    g = torch.Generator().manual_seed(s.seed + epoch)
    order = torch.randperm(n, generator=g)
    dropped = torch.rand(n, generator=g) < s.prompt_dropout
    return int(order[place]), bool(dropped[place])


class Trainer:
    """The model with its LoRA modules, the optimizer, and where the run stands."""

    def __init__(self, model, loras: dict, params: list[torch.nn.Parameter], settings: Settings):
        self.model, self.loras, self.params, self.settings = model, loras, params, settings
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0)
        self.step = 0
        self.losses: list[float] = []  # per step
        self.stop_requested = False

    def request_stop(self) -> None:
        """Stop after the current optimizer step (and say Save(stopped=True))."""
        self.stop_requested = True

    def batch_loss(self, examples: list, features, micro: int) -> torch.Tensor:
        """The loss of one micro-batch (EXAMPLES with their prompt-dropout flags applied)."""
        s, device = self.settings, self.device
        set_dropout_seed(self.loras, s.seed * 1_000_003 + micro)
        if s.task == "generate":
            prompts = [torch.tensor(e.prompt, device=device) for e in examples]
            codes = torch.stack([e.codes for e in examples]).to(device)  # (B, 576)
            return token_loss(forward.image_logits(self.model, prompts, codes, s.checkpointing), codes)
        length = max(len(e.ids) for e in examples)
        ids = torch.tensor([e.ids + [0] * (length - len(e.ids)) for e in examples], device=device)  # (B, T)
        targets = shifted_targets(ids, [e.answer_from for e in examples], [len(e.ids) for e in examples])
        where = targets != IGNORE
        slots = self.model.image_slots(ids, self.special)  # (B, T); the padding (id 0) is no slot
        feats = torch.stack([features[e.image] for e in examples]).to(device)  # (B, slots, C)
        logits = forward.text_logits(self.model, ids, slots, feats, where, s.checkpointing)
        return token_loss(logits, targets[where])

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def train(self, examples: list, features=None, special=None) -> Iterator[Step | Save]:
        """Run from self.step to settings.steps, yielding a Step after each optimizer step and a
        Save every settings.save_every steps, at the end, and when a stop was requested.

        Args:
            examples: GenerateExample or DescribeExample, all of one task.
            features: describe: (n, slots, C) image features, indexed by DescribeExample.image.
            special: describe: the tokenizer's SpecialIds (to find the image slots).
        """
        s = self.settings
        self.special = special
        per_step = s.batch_size * s.grad_accum
        self.model.train()
        while self.step < s.steps:
            t0 = time.perf_counter()
            lr = lr_at(self.step, s)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            total = 0.0
            for micro in range(s.grad_accum):
                first = self.step * per_step + micro * s.batch_size
                batch = []
                for index in range(first, first + s.batch_size):
                    i, dropped = sample_order(len(examples), index, s)
                    e = examples[i]
                    if dropped and isinstance(e, GenerateExample):
                        e = GenerateExample(e.uncond, e.uncond, e.codes)
                    batch.append(e)
                loss = self.batch_loss(batch, features, self.step * s.grad_accum + micro)
                (loss / s.grad_accum).backward()
                total += loss.item() / s.grad_accum
            torch.nn.utils.clip_grad_norm_(self.params, s.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.losses.append(total)
            yield Step(self.step, s.steps, total, lr, per_step / (time.perf_counter() - t0))
            final = self.step == s.steps
            if final or self.stop_requested or (s.save_every and self.step % s.save_every == 0):
                self.model.eval()
                set_dropout_seed(self.loras, None)
                yield Save(self.step, final, stopped=self.stop_requested and not final)
                self.model.train()
                if self.stop_requested:
                    return
        self.model.eval()
        set_dropout_seed(self.loras, None)
