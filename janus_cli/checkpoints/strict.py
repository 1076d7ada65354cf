"""Strict, assign-style loading of a state dict into a model built on the meta device."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from janus_cli.checkpoints.pages import release
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
    own_dtype: tuple[str, ...] = (),
    swap: Callable[[str, nn.Linear], nn.Module] | None = None,
    swapped: tuple[str, ...] = (),
) -> None:
    """Load STATE into MODEL; every parameter must come from exactly one key with its shape.

    Args:
        rename: maps a checkpoint key to the model's parameter name, or None for a tensor the
            checkpoint is known to carry but inference never uses (it is dropped).
        dtype: cast floating tensors to this dtype (None keeps the checkpoint's).
        leave_out: submodules or parameters of MODEL (dotted paths) checked like the rest but
            not loaded: they become None, and their tensors are never read.
        own_dtype: submodules (dotted paths) whose floating tensors take the dtype of MODEL's
            own tensor instead of DTYPE (quantized modules: int4's scales stay bf16).
        swap, swapped: the nn.Linear modules SWAPPED (dotted paths) are loaded one at a time,
            before the rest, and replaced by SWAP(path, linear) (e.g. quantized): the pages of
            each checkpoint tensor they read are then given back (pages.py), so the model as
            the checkpoint stores it is never resident at once.
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

    own = {n: t.dtype for n, t in model.state_dict().items() if any(n.startswith(p + ".") for p in own_dtype)}

    def cast(t: torch.Tensor, name: str = "") -> torch.Tensor:
        to = own.get(name, dtype) if dtype is not None and t.is_floating_point() else t.dtype
        return t.to(device=device, dtype=to)

    done = set()
    for path in swapped:
        if any(path == p or path.startswith(p + ".") for p in leave_out):
            continue
        sources = {k: mapped.pop(f"{path}.{k}") for k in ("weight", "bias") if f"{path}.{k}" in mapped}
        linear = model.get_submodule(path)
        for k, t in sources.items():
            setattr(linear, k, nn.Parameter(cast(t), requires_grad=False))
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent), leaf, swap(path, linear))
        del linear
        for t in sources.values():
            release(t)
        done.add(path)
    missing = model.load_state_dict(
        {n: cast(t, n) for n, t in mapped.items()}, strict=False, assign=True
    ).missing_keys
    stray = [k for k in missing if k.rpartition(".")[0] not in done]
    if stray:  # the checks above make this impossible, unless SWAP made meta tensors
        raise CheckpointError(f"{where}: not loaded: {_few(stray)}")


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
