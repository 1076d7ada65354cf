"""What a run saves: the adapter (PEFT format, checkpoints/adapter.py) and, beside it in
`resume/`, the optimizer state, the step and the loss history, so `--resume` continues exactly.

Tensors go to safetensors and the rest to JSON: nothing saved is a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from janus_cli.errors import InputError

RESUME = "resume"
STATE_TENSORS = "optimizer.safetensors"
STATE_JSON = "state.json"


def adapter_tensors(trainer, heads: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The adapter's tensors in our model's names (as checkpoints/adapter.py's Adapter.tensors):
    `language_model.<module>.lora_A.weight` (r, in), `.lora_B.weight` (out, r), and every
    parameter of the fully trained HEADS."""
    out = {}
    for name, lora in trainer.loras.items():
        out[f"language_model.{name}.lora_A.weight"] = lora.lora_A.detach().cpu().clone()
        out[f"language_model.{name}.lora_B.weight"] = lora.lora_B.detach().cpu().clone()
    for head in heads:
        for key, p in getattr(trainer.model, head).named_parameters():
            out[f"{head}.{key}"] = p.detach().cpu().clone()
    return out


def load_adapter_tensors(trainer, tensors: dict[str, torch.Tensor], heads: tuple[str, ...]) -> None:
    """Put TENSORS (from adapter_tensors, or a saved adapter) back into the trainer's modules."""
    with torch.no_grad():
        for name, lora in trainer.loras.items():
            lora.lora_A.copy_(tensors[f"language_model.{name}.lora_A.weight"])
            lora.lora_B.copy_(tensors[f"language_model.{name}.lora_B.weight"])
        for head in heads:
            for key, p in getattr(trainer.model, head).named_parameters():
                p.copy_(tensors[f"{head}.{key}"])


def save_state(folder: Path, trainer, run: dict) -> None:
    """The optimizer's state, the step, the losses and RUN (the settings that must match on
    resume) into FOLDER/resume/, each file written atomically."""
    from safetensors.torch import save

    from janus_cli.files import write_new

    opt = trainer.optimizer.state_dict()
    tensors = {
        f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
        for i, st in opt["state"].items()
        for k, v in st.items()
    }
    meta = {"step": trainer.step, "losses": trainer.losses, "run": run, "param_groups": opt["param_groups"]}
    resume = Path(folder) / RESUME
    write_new(resume / STATE_TENSORS, lambda f: f.write(save(tensors)), overwrite=True)
    write_new(resume / STATE_JSON, lambda f: f.write(json.dumps(meta).encode()), overwrite=True)


def load_state(folder: Path, trainer, run: dict) -> None:
    """Restore what save_state wrote; refuse a state saved by a run with other settings."""
    from safetensors.torch import load_file

    resume = Path(folder) / RESUME
    try:
        meta = json.loads((resume / STATE_JSON).read_text())
        tensors = load_file(str(resume / STATE_TENSORS))
    except FileNotFoundError:
        raise InputError(f"{folder}: no saved run to resume (no {RESUME}/{STATE_JSON})") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{folder}/{RESUME}: unreadable saved state ({e})") from None
    differ = [k for k in run if meta["run"].get(k) != run[k]]
    if differ:
        was = ", ".join(f"{k}={meta['run'].get(k)!r}" for k in differ)
        raise InputError(f"--resume: {folder} was trained with {was}; give the same settings")
    state: dict = {}
    for key, t in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = t
    trainer.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    trainer.step, trainer.losses = meta["step"], list(meta["losses"])
