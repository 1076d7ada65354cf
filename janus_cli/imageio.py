"""Images in and out: loading, the official SigLIP preprocessing, pixel conversion, PNG writing.

The only module besides the CLI that touches files, and only the ones it is given.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from janus_cli.errors import InputError


@dataclass(frozen=True)
class PreprocessConfig:
    """`preprocessor_config.json` (VLMImageProcessor)."""

    image_size: int = 384
    min_size: int = 14
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    do_normalize: bool = True

    @property
    def background(self) -> tuple[int, int, int]:
        return tuple(int(m * 255) for m in self.mean)  # (127, 127, 127), as the official processor

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(
            image_size=int(d.get("image_size", 384)),
            min_size=int(d.get("min_size", 14)),
            mean=tuple(d.get("image_mean", (0.5, 0.5, 0.5))),
            std=tuple(d.get("image_std", (0.5, 0.5, 0.5))),
            rescale_factor=float(d.get("rescale_factor", 1 / 255)),
            do_normalize=bool(d.get("do_normalize", True)),
        )


def _open(source: str | Path | bytes):
    """(binary file, display name) for a path or bytes; InputError for an unreadable path."""
    name = "<stdin>" if isinstance(source, bytes) else str(source)
    try:
        return (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")), name
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not an image") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror})") from None


def _decode(source: str | Path | bytes, full: bool) -> Image.Image:
    fp, name = _open(source)
    with fp:
        try:
            img = Image.open(fp)
            if full:
                img.load()
        except UnidentifiedImageError:
            raise InputError(f"{name}: not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{name}: corrupt or truncated image ({e})") from None
    return img


def probe_image(source: str | Path | bytes) -> None:
    """Fail now, cheaply (the header only), on a missing file or one Pillow cannot identify."""
    _decode(source, full=False)


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open any Pillow-readable image (path or bytes) as RGB, honouring EXIF orientation.

    Alpha is dropped, not composited, like the official `convert("RGB")`.
    """
    return ImageOps.exif_transpose(_decode(source, full=True)).convert("RGB")


def preprocess(img: Image.Image, cfg: PreprocessConfig = PreprocessConfig()):
    """The official SigLIP input: long side to 384 (bicubic), centred pad, normalise.

    Returns:
        (3, 384, 384) float32 torch tensor.
    """
    import torch

    w, h = img.size
    longest = max(w, h)
    size_w = max(int(w / longest * cfg.image_size), cfg.min_size)
    size_h = max(int(h / longest * cfg.image_size), cfg.min_size)
    img = img.resize((size_w, size_h), Image.BICUBIC)
    side = max(size_w, size_h)
    canvas = Image.new("RGB", (side, side), cfg.background)
    canvas.paste(img, ((side - size_w) // 2, (side - size_h) // 2))
    x = (np.asarray(canvas).astype(np.float64) * cfg.rescale_factor).astype(np.float32)  # (H, W, 3)
    if cfg.do_normalize:
        x = (x - np.array(cfg.mean, np.float32)) / np.array(cfg.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # (3, H, W)


def generation_target(img: Image.Image, size: int = 384):
    """An image as the model would generate it, for training (the VQ encoder's input): RGB, short
    side to SIZE (bicubic; the long side truncated, as torchvision's Resize), centre crop to
    SIZE x SIZE (offsets rounded, as its CenterCrop), x / 127.5 - 1. The official repo has no
    training code; mindone and Janus-Pro-R1 crop this way, and the vq_encode goldens pin it.

    Returns:
        (3, SIZE, SIZE) float32 torch tensor in [-1, 1].
    """
    import torch

    img = img.convert("RGB")
    w, h = img.size
    short = min(w, h)
    new_w, new_h = (size, int(size * h / short)) if w <= h else (int(size * w / short), size)
    img = img.resize((new_w, new_h), Image.BICUBIC)
    left, top = int(round((new_w - size) / 2)), int(round((new_h - size) / 2))
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img).astype(np.float32) / 127.5 - 1  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # (3, H, W)


def to_uint8(images) -> np.ndarray:
    """(B, 3, H, W) images in [-1, 1] -> (B, H, W, 3) uint8, truncating like the official code."""
    x = images.float().clamp(-1, 1).add(1).div(2).mul(255).permute(0, 2, 3, 1)
    return x.cpu().numpy().astype(np.uint8)


def png_metadata(record: dict) -> dict[str, str]:
    """PNG text chunks: each setting as its own key, plus the whole record as JSON under `janus-cli`."""
    import json

    meta = {k: str(v) for k, v in record.items() if v is not None and k != "path"}
    meta["janus-cli"] = json.dumps({k: v for k, v in record.items() if k != "path"}, ensure_ascii=False)
    return meta


def save_png(pixels: np.ndarray, path: Path, metadata: dict[str, str], overwrite: bool = False) -> Path:
    """Write an (H, W, 3) uint8 image with PNG text chunks, atomically (files.write_new).

    Raises:
        PathTaken: PATH exists and OVERWRITE is false. OutputError: it cannot be written.
    """
    from janus_cli.files import write_new

    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_itxt(k, v)
    return write_new(
        Path(path), lambda f: Image.fromarray(pixels).save(f, format="PNG", pnginfo=info), overwrite
    )
