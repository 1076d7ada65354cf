"""Image loading (EXIF, modes), pixel conversion and safe PNG writing."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from janus_cli.errors import InputError
from janus_cli.imageio import load_image, preprocess, save_png, to_uint8


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_honoured():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(encoded(img, "JPEG", exif=exif))
    assert loaded.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "CMYK"])
def test_any_mode_becomes_rgb(mode):
    img = Image.new("RGB", (8, 6), (10, 200, 30)).convert(mode)
    loaded = load_image(encoded(img, "TIFF" if mode in ("I;16", "CMYK") else "PNG"))
    assert loaded.mode == "RGB" and loaded.size == (8, 6)
    assert preprocess(loaded).shape == (3, 384, 384)


def test_truncated_image_is_an_input_error():
    data = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(InputError, match="corrupt|not an image"):
        load_image(data[: len(data) // 2])


def test_to_uint8_truncates_like_the_official_code():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.5]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    # (x + 1) / 2 * 255 = clip -> 0, 0, 127.5 -> 127, 254.87 -> 254, 255
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255]


def test_save_png_is_atomic_keeps_metadata_and_never_overwrites(tmp_path):
    pixels = np.full((4, 4, 3), 7, dtype=np.uint8)
    path = save_png(pixels, tmp_path / "sub" / "a.png", {"prompt": "un chat 🐱", "seed": "3"})
    img = Image.open(path)
    assert img.text == {"prompt": "un chat 🐱", "seed": "3"} and np.array_equal(np.asarray(img), pixels)
    with pytest.raises(InputError, match="exists"):
        save_png(pixels * 2, path, {})
    save_png(pixels * 2, path, {}, overwrite=True)
    assert np.asarray(Image.open(path))[0, 0, 0] == 14
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]  # no temp files left
