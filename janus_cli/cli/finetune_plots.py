"""The pictures `janus finetune` writes at each save: the loss curve and the sample grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOSS_PNG = "loss.png"


def loss_curve(losses: list[float], path: Path, width: int = 640, height: int = 360) -> Path:
    """A line chart of the per-step LOSSES (with a 10-step running mean) written to PATH."""
    from PIL import Image, ImageDraw

    from janus_cli.files import write_new

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = 56, 24, width - 16, height - 32
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    values = np.asarray(losses, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    hi = hi if hi > lo else lo + 1.0

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(1, len(values) - 1))
        return x, bottom - (bottom - top) * (v - lo) / (hi - lo)

    mean = np.array([values[max(0, i - 9) : i + 1].mean() for i in range(len(values))])  # the last 10
    if len(values) > 1:
        draw.line([xy(i, v) for i, v in enumerate(values)], fill=(170, 190, 230), width=1)
        draw.line([xy(i, v) for i, v in enumerate(mean)], fill=(20, 60, 160), width=2)
    draw.text((left, 6), f"training loss: {len(values)} steps, last {values[-1]:.4f}", fill="black")
    draw.text((4, top), f"{hi:.3g}", fill="black")
    draw.text((4, bottom - 10), f"{lo:.3g}", fill="black")
    draw.text((left, bottom + 8), "step 1", fill="black")
    draw.text((right - 60, bottom + 8), f"step {len(values)}", fill="black")
    return write_new(path, lambda f: img.save(f, format="PNG"), overwrite=True)


def sample_grid(base: list[np.ndarray], tuned: list[np.ndarray], prompts: list[str], path: Path) -> Path:
    """Row 1 the base model's images, row 2 the adapter's, a column per prompt, 256 px each."""
    from PIL import Image, ImageDraw

    from janus_cli.files import write_new

    size, label = 256, 16
    grid = Image.new("RGB", (size * len(prompts), 2 * (size + label)), "white")
    draw = ImageDraw.Draw(grid)
    for col, prompt in enumerate(prompts):
        for row, (name, images) in enumerate((("base", base), ("adapter", tuned))):
            y = row * (size + label)
            draw.text((col * size + 4, y + 2), f"{name}: {prompt[:34]}", fill="black")
            grid.paste(
                Image.fromarray(images[col]).resize((size, size), Image.BICUBIC), (col * size, y + label)
            )
    return write_new(path, lambda f: grid.save(f, format="PNG"), overwrite=True)
