"""A conversation about two images: the first attached up front, the second on a later turn.

python examples/chat_two_images.py cat.jpg dog.jpg
"""

import argparse

import janus_cli

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("first")
parser.add_argument("second")
parser.add_argument("--model", default="janus-pro-1b")
parser.add_argument("--max-tokens", type=int, default=128)
parser.add_argument("--device", default="auto")
parser.add_argument("--dtype", default="auto")
args = parser.parse_args()

model = janus_cli.load(args.model, device=args.device, dtype=args.dtype)
chat = model.chat([args.first], max_tokens=args.max_tokens)  # greedy answers; answer t is seeded seed + t
for question, images in [
    ("What is in this picture?", []),
    ("And in this one?", [args.second]),
    ("Which one is brighter?", []),
]:
    print(f"> {question}")
    for piece in chat.stream(question, images=images):  # the answer as it is decoded
        print(piece, end="", flush=True)
    print()
