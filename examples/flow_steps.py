"""JanusFlow at several step counts side by side, from the same seed (the same noise).

python examples/flow_steps.py "a watercolor of a harbour" --steps 5 10 30 --out steps.png
"""

import argparse

from PIL import Image

import janus_cli

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("prompt")
parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 30])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--model", default="janusflow-1.3b")
parser.add_argument("--vae", default=None, help="the SDXL-VAE (default: sdxl-vae)")
parser.add_argument("--out", default="steps.png")
parser.add_argument("--device", default="auto")
parser.add_argument("--dtype", default="auto")
args = parser.parse_args()

model = janus_cli.load(args.model, device=args.device, dtype=args.dtype, vae=args.vae)
# per-image noise comes from the seed alone, so every step count starts from the same latent
row = [model.generate(args.prompt, steps=steps, seed=args.seed)[0].image for steps in args.steps]
strip = Image.new("RGB", (sum(img.width for img in row), row[0].height))
for k, img in enumerate(row):
    strip.paste(img, (k * img.width, 0))
strip.save(args.out)
print(args.out)
