"""An adapter folded into a checkpoint's tensors as they stream by, for `janus merge`
(checkpoints/convert.py writes them): the same merge rule as `--adapter` (adapter.merged_weight),
so a merged checkpoint loads to the very weights `--adapter` gives."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from janus_cli.checkpoints.adapter import Adapter, merged_weight
from janus_cli.errors import CheckpointError


def merge_tensors(
    tensors: Iterator[tuple[str, torch.Tensor]], adapter: Adapter
) -> Iterator[tuple[str, torch.Tensor]]:
    """TENSORS (published keys) with ADAPTER's LoRA deltas added to the weights it targets and
    its `modules_to_save` tensors in place of the base's, each in the base tensor's dtype.

    Raises:
        CheckpointError: an adapter tensor the checkpoint has no place for, or of another shape.
    """
    where = f"adapter {adapter.name}"
    lora, saved = adapter.lora, adapter.saved
    unused = {f"{m}.weight" for m in lora} | set(saved)
    for key, t in tensors:
        module = key.removesuffix(".weight")
        if key.endswith(".weight") and module in lora:
            a, b = lora[module]
            if t.dim() != 2 or (b.shape[0], a.shape[1]) != tuple(t.shape):
                raise CheckpointError(
                    f"{where}: {module} is {tuple(t.shape)} in the checkpoint, the adapter's B @ A is "
                    f"({b.shape[0]}, {a.shape[1]}): made for another model"
                )
            t = merged_weight(t, a, b, adapter.config.scale)
        elif key in saved:
            if saved[key].shape != t.shape:
                raise CheckpointError(
                    f"{where}: {key} is {tuple(t.shape)} in the checkpoint, "
                    f"{tuple(saved[key].shape)} in the adapter"
                )
            t = saved[key].to(t.dtype)
        unused.discard(key)
        yield key, t
    if unused:
        raise CheckpointError(f"{where}: the checkpoint has no {', '.join(sorted(unused)[:3])}")
