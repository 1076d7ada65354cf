"""`--batch-size auto`: as many images per forward as the free memory holds for their KV cache.

An image's forward state is its rows' keys and values: 2 (k, v) x layers x kv heads x head dim
x bytes x positions, per row, with two rows per image under CFG. Janus-Pro-1B in bf16 holds
192 KiB per position and row, so a 40-token prompt plus 576 image tokens is 231 MiB per CFG image;
Janus-Pro-7B holds 480 KiB, 578 MiB per image. The image decoders run one image at a time
after the cache is freed, so they add nothing per image.
"""

from __future__ import annotations

from pathlib import Path

import torch

from janus_cli.config import LlamaConfig

# Half of what is free goes to the cache: activations, the sampler and other processes need room.
SHARE = 0.5
# Past these, images/s barely grow (CPU: N = 16 runs ~6x the images/s of N = 1, N = 4 ~4x) while a
# longer forward delays every image of it.
MOST = {"cpu": 16, "mps": 16, "cuda": 64}


def kv_bytes_per_image(cfg: LlamaConfig, positions: int, dtype: torch.dtype, guided: bool) -> int:
    rows = 2 if guided else 1
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * dtype.itemsize * positions * rows


def free_bytes(device: torch.device) -> int | None:
    """What DEVICE can still allocate, or None where that is unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_batch_size(per_image: int, free: int | None, device: torch.device, images: int) -> int:
    """Images per forward: what SHARE of FREE holds at PER_IMAGE bytes each, at least 1, at most
    MOST for the device and IMAGES (the run's image count); 4 when FREE is unknown."""
    fits = 4 if free is None else int(free * SHARE // per_image)
    return max(1, min(fits, MOST.get(device.type, 16), images))
