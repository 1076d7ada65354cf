"""`janus merge`: a checkpoint with a LoRA adapter folded into its weights."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import console, options, terminal
from janus_cli.cli.convert import MaxShardSize, check_dtype, write


def merge(
    adapter: Annotated[
        str,
        typer.Option("--adapter", show_default=False, help="The LoRA adapter folder (PEFT format)."),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Folder to write (created; must be empty unless --overwrite).",
        ),
    ],
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="Cast floating tensors first: bfloat16 or float32 (default: keep the base's; the "
            "merge itself is computed in float32 either way).",
        ),
    ] = None,
    max_shard_size: MaxShardSize = "5GB",
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a non-empty output folder (once the new one is verified)."),
    ] = False,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
    model: options.Model = "janus-pro-1b",
    revision: options.Revision = None,
) -> None:
    """Merge a LoRA adapter into a checkpoint; writes safetensors in the published layout
    (config, tokenizer and processor files copied) and prints the folder. It loads like any
    checkpoint, and gives what `--adapter` gives.

    [b]Examples[/b]

      janus merge -m janus-pro-1b --adapter ./style -o ./janus-pro-1b-style

      janus generate "a cat, in my style" -m ./janus-pro-1b-style
    """
    from pathlib import Path

    with console.handle_errors():
        check_dtype(dtype)
        from janus_cli.checkpoints.adapter import read_adapter
        from janus_cli.checkpoints.convert import parse_size
        from janus_cli.checkpoints.hub import resolve

        shard = parse_size(max_shard_size)
        lora = read_adapter(Path(adapter).expanduser())  # a bad adapter fails before any download
        folder = resolve(model, revision, progress=console.show_progress(quiet))
        result, seconds = write(folder, output, dtype, shard, overwrite, quiet, "merging", lora)
        if as_json:
            doc = {
                "path": str(result.folder),
                "model": str(folder),
                "adapter": lora.name,
                "adapter_sha256": lora.digest,
                "files": list(result.files),
                "tensors": result.tensors,
                "bytes": result.bytes,
                "seconds": round(seconds, 3),
            }
            typer.echo(json.dumps(doc, indent=2))
        else:
            typer.echo(str(result.folder))
        if not quiet:
            whole = len(lora.config.modules_to_save)
            also = f" and {terminal.plural(whole, 'whole module')}" if whole else ""
            console.err.print(
                f"merged adapter {lora.name} into {terminal.plural(len(lora.lora), 'linear')}{also}; "
                f"{result.bytes / 1e9:.2f} GB verified, in {seconds:.1f}s",
                markup=False,
            )
