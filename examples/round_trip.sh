#!/usr/bin/env bash
# A prompts file -> images (generate --jsonl) -> captions of those images (describe --jsonl) ->
# one JSON line per image joining prompt, seed, file and caption.
#
#   bash examples/round_trip.sh prompts.txt out/            (MODEL=... to choose the checkpoint)
set -euo pipefail
prompts=$1
out=${2:-out}
model=${MODEL:-janus-pro-1b}
mkdir -p "$out"

janus generate -f "$prompts" -m "$model" -o "$out" --jsonl -q ${JANUS_EXTRA:-} > "$out/images.jsonl"
python3 -c 'import json, sys; [print(json.loads(l)["path"]) for l in open(sys.argv[1])]' "$out/images.jsonl" > "$out/files.txt"
xargs -d '\n' janus describe -m "$model" -p "One-sentence caption." --jsonl -q ${JANUS_EXTRA:-} < "$out/files.txt" > "$out/captions.jsonl"
python3 - "$out/images.jsonl" "$out/captions.jsonl" > "$out/round_trip.jsonl" <<'PY'
import json, sys
images = [json.loads(line) for line in open(sys.argv[1])]
captions = {c["image"]: c["text"] for c in map(json.loads, open(sys.argv[2]))}
for r in images:
    print(json.dumps({"prompt": r["prompt"], "seed": r["seed"], "file": r["path"], "caption": captions[r["path"]]}))
PY
echo "$out/round_trip.jsonl"
