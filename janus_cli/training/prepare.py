"""Everything before the first step: the model loaded for training, the data checked and made
into examples (images encoded once: VQ codes cached on disk, SigLIP features in memory, both
towers frozen), the LoRA modules, the trainer, and a saved run restored for `--resume`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from janus_cli.errors import InputError
from janus_cli.training.lora import HEADS, add_lora, train_in_fp32

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class Options:
    model: str
    task: str
    data: Path
    out: Path
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    train_head: bool = False
    question: str = ""  # describe: what a folder's captions answer ("" = describe's default)
    keep_going: bool = False
    resume: bool = False
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None

    def run_settings(self, settings) -> dict:
        """What a resumed run must share with the saved one: everything that changes the
        numbers (how often it saves and whether it recomputes activations do not)."""
        keys = ("task", "rank", "alpha", "dropout", "train_head")
        loop = {k: v for k, v in vars(settings).items() if k not in ("save_every", "checkpointing")}
        return {**{k: getattr(self, k) for k in keys}, **loop, "data": str(self.data)}


@dataclass
class Prepared:
    session: object  # pipelines.session.Session over the training model (unprepared: LoRA-wrapped)
    trainer: object
    examples: list
    features: torch.Tensor | None
    skipped: list[str] = field(default_factory=list)
    heads: tuple[str, ...] = ()
    prompts: list[str] = field(default_factory=list)  # generate: the records' prompts, in order


def prepare(opts: Options, settings_for: Callable[[int], object], progress: Progress) -> Prepared:
    """Load, check, encode, wrap. SETTINGS_FOR(number of examples) gives the loop Settings
    (the step count of --epochs depends on the data)."""
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.load import load_model
    from janus_cli.config import JanusConfig, read_json
    from janus_cli.imageio import PreprocessConfig, load_image
    from janus_cli.pipelines.image_to_text import DescribeSettings
    from janus_cli.pipelines.session import Session
    from janus_cli.runtime import choose_device, choose_dtype
    from janus_cli.tokenizer import Tokenizer
    from janus_cli.training import data
    from janus_cli.training.loop import Trainer

    device = choose_device(opts.device)
    dtype = choose_dtype(opts.dtype, device)
    folder = resolve(opts.model, opts.revision, progress=True)
    cfg = JanusConfig.from_file(folder / "config.json")
    if cfg.family == "janusflow" and opts.task == "generate":
        raise InputError(
            f"{opts.model} is a JanusFlow checkpoint: fine-tuning supports --task describe only "
            "(flow generation training is not supported)"
        )
    if cfg.family == "janusflow" and opts.train_head:
        raise InputError("--train-head trains Janus's image head; JanusFlow has none (--task describe only)")
    question = opts.question or DescribeSettings().question
    records = data.read_records(opts.data, opts.task, question)
    tok = Tokenizer(folder, flow=cfg.family == "janusflow")
    pre = folder / "preprocessor_config.json"
    preprocess = PreprocessConfig.from_dict(read_json(pre)) if pre.exists() else PreprocessConfig()
    session = Session(opts.model, folder, cfg, None, tok, preprocess, device, dtype)  # the model: below
    kept, skipped = data.checked(records, opts.task, load_image, _fits(session, opts.task), opts.keep_going)
    if not kept:
        raise InputError(f"{opts.data}: no usable records ({len(skipped)} skipped)")
    parts = ("generation", "encoding") if opts.task == "generate" else ("understanding",)
    session.model = model = load_model(folder, dtype, device, parts)  # after the checks: they are fast
    features = None
    if opts.task == "generate":
        codes = encode_targets(session, [r.image for r in kept], progress)
        examples = [
            data.generate_example(_prompt_ids(session, r.text), tok.special.pad, c)
            for r, c in zip(kept, codes, strict=True)
        ]
    else:
        features = image_features(session, [r.image for r in kept], progress)
        examples = []
        for i, r in enumerate(kept):
            ids, start = data.describe_ids(tok, r.text, r.answer, cfg.image_tokens)
            examples.append(data.DescribeExample(ids, start, i))

    settings = settings_for(len(examples))
    g = torch.Generator().manual_seed(settings.seed)
    loras = add_lora(model.language_model, opts.rank, opts.alpha, opts.dropout, g)
    params = [p for lora in loras.values() for p in (lora.lora_A, lora.lora_B)]
    heads = HEADS if opts.train_head else ()
    for head in heads:
        params += list(train_in_fp32(getattr(model, head), dtype).parameters())
    trainer = Trainer(model, loras, params, settings)
    if opts.resume:
        restore(opts, trainer, heads, settings)
    prompts = [r.text for r in kept] if opts.task == "generate" else []
    return Prepared(session, trainer, examples, features, skipped, heads, prompts)


def restore(opts: Options, trainer, heads: tuple[str, ...], settings) -> None:
    from janus_cli.checkpoints.adapter import read_adapter
    from janus_cli.training.state import load_adapter_tensors, load_state

    load_state(opts.out, trainer, opts.run_settings(settings))
    load_adapter_tensors(trainer, read_adapter(opts.out).tensors, heads)


def _prompt_ids(session, prompt: str) -> list[int]:
    from janus_cli.pipelines.text_to_image import prompt_ids

    return prompt_ids(session, prompt)


def _fits(session, task: str) -> Callable:
    """The context check of a record: "" or why it does not fit."""
    from janus_cli.training.data import describe_ids

    def fits(record) -> str:
        try:
            if task == "generate":
                _prompt_ids(session, record.text)  # raises with inference's own message
                return ""
            ids, _ = describe_ids(session.tokenizer, record.text, record.answer, session.config.image_tokens)
        except InputError as e:
            return str(e)
        limit = session.config.llm.context_length
        return (
            f"the conversation is {len(ids)} tokens, over the {limit}-token context"
            if len(ids) > limit
            else ""
        )

    return fits


def cache_dir() -> Path:
    """Where the encodings of training images are kept: $XDG_CACHE_HOME/janus-cli/training (as
    the kernels' cache: ~/.cache when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "janus-cli" / "training"


def model_key(session) -> str:
    """The checkpoint's identity for the cache: its folder, weight files (names, sizes, times)
    and the dtype the encoder ran in."""
    h = hashlib.sha256(f"{Path(session.folder).resolve()}|{session.dtype}".encode())
    for p in sorted(Path(session.folder).iterdir()):
        if p.suffix in (".safetensors", ".bin"):
            st = p.stat()
            h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def image_features(session, paths: list[Path], progress: Progress) -> torch.Tensor:
    """(n, slots, C) what describe puts in each image's slots (the vision tower is frozen, so
    every epoch would compute the same), cached like the VQ codes."""
    from janus_cli.imageio import load_image, preprocess

    def compute(path: Path) -> torch.Tensor:
        pixels = preprocess(load_image(path), session.preprocess)[None].to(session.device, session.dtype)
        return session.model.image_features(pixels)[0].cpu()  # (slots, C)

    return torch.stack(cached(session, "features", paths, compute, progress)).to(session.device)


def encode_targets(session, paths: list[Path], progress: Progress) -> list[torch.Tensor]:
    """(576,) VQ codes per image: the generation targets."""
    return cached(session, "VQ codes", paths, lambda path: encode_image(session, path), progress)


@torch.no_grad()
def cached(session, what: str, paths: list[Path], compute, progress: Progress) -> list[torch.Tensor]:
    """COMPUTE(path) for each of PATHS, from the cache or computed and cached, keyed by WHAT,
    the image file's sha256 and model_key."""
    from safetensors.torch import load_file, save

    from janus_cli.files import write_new

    folder = cache_dir() / model_key(session)
    out = []
    for i, path in enumerate(paths):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        file = folder / f"{digest}-{what.replace(' ', '-').lower()}.safetensors"
        value = load_file(str(file))["value"] if file.exists() else None
        if value is None:
            value = compute(path).contiguous()
            write_new(file, lambda f, v=value: f.write(save({"value": v})), overwrite=True)
        out.append(value)
        progress(what, i + 1, len(paths))
    return out


def encode_image(session, path: Path) -> torch.Tensor:
    """(576,) int64 codes of the image at PATH made a generation target (imageio.generation_target)."""
    from janus_cli.imageio import generation_target, load_image

    pixels = generation_target(load_image(path))[None].to(session.device, session.dtype)  # (1, 3, 384, 384)
    return (
        session.model.encode_images(pixels)[0].cpu().clone()
    )  # clone: a normal tensor, not an inference one
