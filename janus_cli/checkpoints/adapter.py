"""LoRA adapters in PEFT's format: read, write, and merge into a loaded model.

An adapter is a folder with `adapter_config.json` and `adapter_model.safetensors`. Its keys are
PEFT's (`base_model.model.<module>.lora_A.weight`, adapter name stripped) over the PUBLISHED
checkpoint's module names, so PEFT can put it on the official model; fully trained modules
(`modules_to_save`, e.g. `gen_head`) are stored whole under `base_model.model.<module>.<param>`.
Adapters saved over transformers' `JanusForConditionalGeneration` (`base_model.model.model.
language_model.layers...`, `model.generation_head...`) load too: their names go through the one
table that maps that layout (transformers_layout.py). In memory every name is our model's
parameter name, which is the published one (load.py).

Legend: r rank, K in features, N out features.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from janus_cli.errors import CheckpointError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
_SAVED_INFIX = re.compile(r"\.modules_to_save(\.[A-Za-z0-9_-]+)?\.")  # PEFT's wrapper, if not stripped
# `modules_to_save` entries of a transformers-layout adapter, as our module names (the whole-module
# counterpart of transformers_layout.HF_TO_PUBLISHED, for the modules worth training whole).
HF_MODULES = {
    "generation_head": "gen_head",
    "generation_aligner": "gen_aligner",
    "generation_embeddings": "gen_embed",
    "lm_head": "language_model.lm_head",
}


@dataclass(frozen=True)
class AdapterConfig:
    """What `adapter_config.json` says. JANUS: our own fields (task, base model, ...)."""

    r: int
    lora_alpha: float
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = LORA_TARGETS
    modules_to_save: tuple[str, ...] = ()
    base_model_name_or_path: str | None = None
    use_rslora: bool = False
    janus: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """PEFT's scaling of B @ A: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        return self.lora_alpha / (self.r**0.5 if self.use_rslora else self.r)

    def to_json(self) -> dict[str, Any]:
        return {
            "peft_type": "LORA",
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": list(self.target_modules),
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "modules_to_save": list(self.modules_to_save) or None,
            "task_type": None,
            "use_rslora": self.use_rslora,
            "janus": dict(self.janus),
        }

    @classmethod
    def from_json(cls, d: Any, where: str) -> AdapterConfig:
        def bad(msg: str) -> CheckpointError:
            return CheckpointError(f"{where}: {msg}")

        if not isinstance(d, dict):
            raise bad("not a JSON object")
        if d.get("peft_type", "LORA") != "LORA":
            raise bad(f"peft_type {d.get('peft_type')!r}: only LORA adapters are supported")
        r, alpha = d.get("r"), d.get("lora_alpha")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise bad(f"r {r!r}: a positive integer is needed")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise bad(f"lora_alpha {alpha!r}: a number is needed")
        unsupported = {
            "use_dora": bool(d.get("use_dora")),
            "fan_in_fan_out": bool(d.get("fan_in_fan_out")),
            "rank_pattern": bool(d.get("rank_pattern")),
            "alpha_pattern": bool(d.get("alpha_pattern")),
            "bias": d.get("bias", "none") not in (None, "none"),
        }
        for key, used in unsupported.items():
            if used:
                raise bad(f"{key} {d.get(key)!r} is not supported (plain LoRA only)")
        targets = d.get("target_modules") or list(LORA_TARGETS)
        targets = [targets] if isinstance(targets, str) else targets
        saved = d.get("modules_to_save") or []
        janus = d.get("janus") or {}
        if not all(isinstance(x, str) for x in [*targets, *saved]) or not isinstance(janus, dict):
            raise bad("target_modules and modules_to_save must be lists of names, janus an object")
        saved = [HF_MODULES.get(s.removeprefix("model."), s.removeprefix("model.")) for s in saved]
        return cls(
            r=r,
            lora_alpha=float(alpha),
            lora_dropout=float(d.get("lora_dropout") or 0.0),
            target_modules=tuple(targets),
            modules_to_save=tuple(saved),
            base_model_name_or_path=d.get("base_model_name_or_path"),
            use_rslora=bool(d.get("use_rslora")),
            janus=janus,
        )

    def targets(self, module: str) -> bool:
        """Whether PEFT would put LoRA on MODULE: a list matches the last name parts, a string is
        a regex over the whole name ("all-linear": any)."""
        if len(self.target_modules) == 1 and self.target_modules[0] == "all-linear":
            return True
        if len(self.target_modules) == 1 and not re.fullmatch(r"[\w.]+", self.target_modules[0]):
            return re.fullmatch(self.target_modules[0], module) is not None
        return any(module == t or module.endswith("." + t) for t in self.target_modules)


@dataclass(frozen=True)
class Adapter:
    """A read adapter. TENSORS: our model's names, `<module>.lora_A.weight` (r, K), `<module>.
    lora_B.weight` (N, r), and every parameter of each module in `config.modules_to_save`."""

    config: AdapterConfig
    tensors: dict[str, Tensor]
    name: str = "adapter"  # the folder's name: what recipes and served model ids show

    @property
    def lora(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Module name -> (A (r, K), B (N, r))."""
        out = {}
        for key in self.tensors:
            m = _LORA_KEY.fullmatch(key)
            if m and m["ab"] == "A":
                out[m["module"]] = (self.tensors[key], self.tensors[f"{m['module']}.lora_B.weight"])
        return out

    @property
    def saved(self) -> dict[str, Tensor]:
        """The fully trained modules' parameters, by our parameter names."""
        return {k: t for k, t in self.tensors.items() if not _LORA_KEY.fullmatch(k)}

    @cached_property
    def digest(self) -> str:
        """sha256 of what the adapter does to a model (scale, names, dtypes, shapes, values),
        the same whichever key layout it was saved in."""
        h = hashlib.sha256(json.dumps({"scale": self.config.scale}, sort_keys=True).encode())
        for key in sorted(self.tensors):
            t = self.tensors[key].contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def ref(self, path: Path | str) -> AdapterRef:
        return AdapterRef(self.name, self.digest, str(path))


@dataclass(frozen=True)
class AdapterRef:
    """What a run records of the adapter it merged: no tensors kept alive."""

    name: str
    digest: str
    path: str  # absolute, so that `--from-image` finds it from any folder

    def recipe(self) -> dict[str, str]:
        """The recipe fields (PNG metadata, sidecars, manifests): `--from-image` finds the adapter
        at `adapter` and checks it by `adapter_sha256`."""
        return {"adapter": self.path, "adapter_name": self.name, "adapter_sha256": self.digest}


def merged_weight(w: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    """W + SCALE * B @ A, computed in fp32 and returned in W's dtype: the one merge rule, for
    `--adapter` (apply_adapter) and `janus merge` alike. W (N, K), A (r, K), B (N, r)."""
    delta = b.to(w.device, torch.float32) @ a.to(w.device, torch.float32)  # (N, K)
    return (w.float() + scale * delta).to(w.dtype)


def write_adapter(
    folder: Path, config: AdapterConfig, tensors: Mapping[str, Tensor], overwrite: bool = False
) -> Path:
    """Write TENSORS (our names, as Adapter.tensors) and CONFIG as a PEFT adapter in FOLDER, keys
    in the published layout. The files are written under temporary names and renamed, weights
    first; an existing adapter there is never replaced unless OVERWRITE. Returns FOLDER."""
    from safetensors.torch import save

    from janus_cli.files import PathTaken, write_new

    folder = Path(folder)
    adapter = Adapter(config, dict(tensors), folder.name)
    check(adapter, str(folder))  # never write what read_adapter would refuse
    if not overwrite and any((folder / n).exists() for n in (CONFIG_FILE, WEIGHTS_FILE)):
        raise PathTaken(f"{folder}: already holds an adapter (use --overwrite to replace it)")
    peft = {PEFT_PREFIX + k: t.detach().cpu().contiguous() for k, t in tensors.items()}
    weights = save(peft, metadata={"format": "pt"})
    text = (json.dumps(config.to_json(), indent=2) + "\n").encode()
    if not folder.exists():  # build it beside, then rename: nobody sees half an adapter
        tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
        try:
            write_new(tmp / WEIGHTS_FILE, lambda f: f.write(weights))
            write_new(tmp / CONFIG_FILE, lambda f: f.write(text))
            os.rename(tmp, folder)
            return folder
        except OSError:
            if not folder.exists():
                raise
        finally:
            for p in (tmp / WEIGHTS_FILE, tmp / CONFIG_FILE):
                p.unlink(missing_ok=True)
            if tmp.exists():
                tmp.rmdir()
    write_new(folder / WEIGHTS_FILE, lambda f: f.write(weights), overwrite)
    write_new(folder / CONFIG_FILE, lambda f: f.write(text), overwrite)
    return folder


def read_adapter(folder: Path) -> Adapter:
    """The adapter in FOLDER, tensors renamed to our model's names (either key layout).

    Raises:
        CheckpointError: one line: missing files, a pickled adapter, a bad config, an unknown
        or unlisted key, a lora_A without its lora_B (or the reverse), a rank that is not r.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    where = str(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{where}: no such adapter folder")
    if not (folder / WEIGHTS_FILE).is_file():
        pickled = (folder / "adapter_model.bin").is_file()
        raise CheckpointError(
            f"{where}: "
            + (
                "adapter_model.bin is a pickle and is refused; save the adapter as safetensors"
                if pickled
                else f"no {WEIGHTS_FILE}"
            )
        )
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no {CONFIG_FILE}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{where}/{CONFIG_FILE}: unreadable ({e})") from None
    config = AdapterConfig.from_json(raw, f"{where}/{CONFIG_FILE}")
    try:
        stored = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}/{WEIGHTS_FILE}: unreadable safetensors file ({e})") from None
    tensors = {}
    for key, t in stored.items():
        name = our_name(key, where)
        if name in tensors:
            raise CheckpointError(f"{where}: two tensors map to {name} (the second is {key})")
        tensors[name] = t
    adapter = Adapter(config, tensors, folder.resolve().name)
    check(adapter, where)
    return adapter


def our_name(key: str, where: str) -> str:
    """Our parameter name for the adapter key KEY (published or transformers layout)."""
    from janus_cli.checkpoints.transformers_layout import map_key

    if not key.startswith(PEFT_PREFIX):
        raise CheckpointError(
            f"{where}: key {key!r} does not start with {PEFT_PREFIX!r} (not a PEFT adapter)"
        )
    rest = _SAVED_INFIX.sub(".", key.removeprefix(PEFT_PREFIX))
    m = _LORA_KEY.fullmatch(rest)
    module, suffix = (m["module"] + ".weight", f".lora_{m['ab']}.weight") if m else (rest, "")
    if module.startswith("model.") or module == "lm_head.weight":  # JanusForConditionalGeneration
        try:
            mapped, op, _ = map_key(module)
        except CheckpointError:
            raise CheckpointError(f"{where}: unknown transformers-layout key {key!r}") from None
        if op is not None:
            raise CheckpointError(f"{where}: {key!r} is a fused or reshaped tensor; adapters cannot hold it")
        module = mapped
    return module.removesuffix(".weight") + suffix if m else module


def check(adapter: Adapter, where: str) -> None:
    """Refuse, in one line, an adapter whose tensors do not fit its config."""
    cfg, names = adapter.config, adapter.tensors
    if not names:
        raise CheckpointError(f"{where}: the adapter holds no tensors")
    for key, t in names.items():
        m = _LORA_KEY.fullmatch(key)
        if m:
            module, ab = m["module"], m["ab"]
            other = f"{module}.lora_{'B' if ab == 'A' else 'A'}.weight"
            if other not in names:
                raise CheckpointError(f"{where}: {key} has no {other.rsplit('.', 2)[-2]}")
            if not cfg.targets(module):
                raise CheckpointError(f"{where}: LoRA on {module}, which target_modules does not name")
            rank = t.shape[0] if ab == "A" else t.shape[-1]
            if t.dim() != 2 or rank != cfg.r:
                raise CheckpointError(
                    f"{where}: {key} has shape {tuple(t.shape)}, not rank r={cfg.r} "
                    f"({'(r, in)' if ab == 'A' else '(out, r)'})"
                )
        elif not any(key.startswith(s + ".") for s in cfg.modules_to_save):
            raise CheckpointError(
                f"{where}: unexpected tensor {key} "
                f"(neither LoRA nor in modules_to_save {list(cfg.modules_to_save)})"
            )
        if not t.is_floating_point():
            raise CheckpointError(f"{where}: {key} is {t.dtype}, not a float tensor")


def apply_adapter(model: nn.Module, adapter: Adapter) -> nn.Module:
    """Merge ADAPTER into MODEL in place: W += scale * B @ A for each LoRA module, computed in
    fp32 and stored in W's dtype, and the `modules_to_save` parameters replaced. Run it right
    after loading, before int8 quantization and the CPU kernels' re-layout (session.py): those
    work on plain nn.Linear weights. Modules of a part the model left out (None) are skipped.
    Returns MODEL.

    Raises:
        CheckpointError: a module the model does not have, not a plain linear, or a shape that
        does not fit it: the adapter was made for another model.
    """
    where = f"adapter {adapter.name}"
    for module, (a, b) in adapter.lora.items():
        linear = _module(model, module, where)
        if linear is None:
            continue
        if type(linear) is not nn.Linear:
            raise CheckpointError(f"{where}: {module} is a {type(linear).__name__}, not a linear layer")
        n, k = linear.weight.shape
        if a.shape[1] != k or b.shape[0] != n:
            raise CheckpointError(
                f"{where}: {module} is ({n}, {k}) in this model, the adapter's B @ A is "
                f"({b.shape[0]}, {a.shape[1]}): made for another model"
            )
        # A new tensor, never written into the checkpoint's memory map.
        linear.weight.data = merged_weight(linear.weight, a, b, adapter.config.scale)
    for module in adapter.config.modules_to_save:
        target = _module(model, module, where)
        if target is None:
            continue
        given = {
            k.removeprefix(module + "."): t for k, t in adapter.tensors.items() if k.startswith(module + ".")
        }
        params = dict(target.named_parameters())
        if set(given) != set(params):
            missing, extra = sorted(set(params) - set(given)), sorted(set(given) - set(params))
            raise CheckpointError(
                f"{where}: {module} needs {missing or 'no more'}, has extra {extra or 'none'}"
            )
        for key, p in params.items():
            if given[key].shape != p.shape:
                raise CheckpointError(
                    f"{where}: {module}.{key} is {tuple(p.shape)} in this model, "
                    f"{tuple(given[key].shape)} in the adapter"
                )
            p.data = given[key].to(p.device, p.dtype)
    return model


def _module(model: nn.Module, path: str, where: str) -> nn.Module | None:
    """MODEL's submodule at PATH; None when it (or a parent) was left out at load."""
    node: Any = model
    for part in path.split("."):
        if node is None:
            return None
        if not hasattr(node, part):
            raise CheckpointError(f"{where}: this model has no module {path}")
        node = getattr(node, part)
    return node
