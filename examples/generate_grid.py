"""Four images of one prompt on a 2x2 contact sheet, each seed written under its image.

python examples/generate_grid.py "a lighthouse at dawn" --out grid.png
"""

import argparse

from PIL import Image, ImageDraw

import janus_cli

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("prompt")
parser.add_argument("--model", default="janus-pro-1b")
parser.add_argument("--seed", type=int, default=None, help="image k uses seed + k (random if unset)")
parser.add_argument("--out", default="grid.png")
parser.add_argument("--device", default="auto")
parser.add_argument("--dtype", default="auto")
args = parser.parse_args()

model = janus_cli.load(args.model, device=args.device, dtype=args.dtype)
images = model.generate(args.prompt, n=4, seed=args.seed)  # one call: the four share forward passes

side, caption = images[0].image.width, 24
sheet = Image.new("RGB", (2 * side, 2 * (side + caption)), "white")
draw = ImageDraw.Draw(sheet)
for k, img in enumerate(images):
    x, y = (k % 2) * side, (k // 2) * (side + caption)
    sheet.paste(img.image, (x, y))
    draw.text((x + 8, y + side + 6), f"seed {img.seed}", fill="black")  # re-make it with --seed SEED -n 1
sheet.save(args.out)
print(args.out)
