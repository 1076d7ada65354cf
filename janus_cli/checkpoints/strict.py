"""Strict, assign-style loading of a state dict into a model built on the meta device."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from janus_cli.errors import CheckpointError

_SHOW = 5  # keys listed in an error message


def load_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    where: str,
    rename: Callable[[str], str | None] = lambda k: k,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    leave_out: tuple[str, ...] = (),
) -> None:
    """Load STATE into MODEL; every parameter must come from exactly one key with its shape.

    Args:
        rename: maps a checkpoint key to the model's parameter name, or None for a tensor the
            checkpoint is known to carry but inference never uses (it is dropped).
        dtype: cast floating tensors to this dtype (None keeps the checkpoint's).
        leave_out: submodules or parameters of MODEL (dotted paths) checked like the rest but
            not loaded: they become None, and their tensors are never read.
    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    mapped: dict[str, torch.Tensor] = {}
    unexpected, wrong, wrong_names = [], [], set()
    for key, tensor in state.items():
        name = rename(key)
        if name is None:
            continue
        if name not in expected:
            unexpected.append(key)
        elif tensor.shape != expected[name]:
            wrong.append(f"{key} {tuple(tensor.shape)} (config says {tuple(expected[name])})")
            wrong_names.add(name)
        else:
            mapped[name] = tensor
    missing = [k for k in expected if k not in mapped and k not in wrong_names]
    problems = []
    if wrong:
        problems.append(f"shape mismatch for {_few(wrong)}")
    if missing:
        problems.append(f"missing {len(missing)} tensors: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors: {_few(unexpected)}")
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not match its config: " + "; ".join(problems))
    for path in leave_out:
        drop(model, path)
    mapped = {
        name: t
        for name, t in mapped.items()
        if not any(name == p or name.startswith(p + ".") for p in leave_out)
    }
    for name, t in mapped.items():
        cast = dtype if dtype is not None and t.is_floating_point() else t.dtype
        mapped[name] = t.to(device=device, dtype=cast)
    model.load_state_dict(mapped, strict=True, assign=True)


def drop(model: nn.Module, path: str) -> None:
    """Set MODEL's submodule or parameter at the dotted PATH to None (nothing to do when a
    parent of it already is)."""
    parent, _, leaf = path.rpartition(".")
    owner = model
    for name in parent.split(".") if parent else ():
        owner = getattr(owner, name)
        if owner is None:
            return
    setattr(owner, leaf, None)


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more
