"""Describe every image of a folder into a CSV (file, caption).

python examples/caption_folder.py photos/ --out captions.csv
"""

import argparse
import csv
from pathlib import Path

import janus_cli

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder")
parser.add_argument("--question", default="One-sentence caption.")
parser.add_argument("--model", default="janus-pro-1b")
parser.add_argument("--max-tokens", type=int, default=64)
parser.add_argument("--out", default="captions.csv")
parser.add_argument("--device", default="auto")
parser.add_argument("--dtype", default="auto")
args = parser.parse_args()

model = janus_cli.load(
    args.model, device=args.device, dtype=args.dtype, parts=("understanding",)
)  # no image decoders
images = sorted(
    p for p in Path(args.folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}
)
with open(args.out, "w", newline="", encoding="utf-8") as f:
    table = csv.writer(f)
    table.writerow(["file", "caption"])
    for path in images:
        table.writerow([path.name, model.describe(path, args.question, max_tokens=args.max_tokens)])  # greedy
print(args.out)
