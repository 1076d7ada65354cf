#!/usr/bin/env bash
# A folder of images with same-name .txt captions -> a LoRA adapter -> new images with it.
#
#   bash examples/finetune_style.sh my-style/ "a lighthouse at dawn, in my style" out/
#
# MODEL picks the checkpoint (default janus-pro-1b), STEPS the training length (default 300),
# N the images to make (default 4); JANUS_EXTRA is added to both commands (e.g. "--device cpu"),
# FINETUNE_EXTRA to the training only.
set -euo pipefail
data=$1
prompt=$2
out=${3:-out}
model=${MODEL:-janus-pro-1b}
mkdir -p "$out"

janus finetune -m "$model" --task generate --data "$data" -o "$out/adapter" \
    --steps "${STEPS:-300}" --batch-size 4 -q ${JANUS_EXTRA:-} ${FINETUNE_EXTRA:-} > /dev/null
janus generate "$prompt" -m "$model" --adapter "$out/adapter" -n "${N:-4}" -o "$out/" -q ${JANUS_EXTRA:-}
