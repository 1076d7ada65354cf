"""`janus convert`: rewrite a checkpoint as verified safetensors in the published layout."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import console, options, terminal

DTYPES = ("bfloat16", "float32")
MaxShardSize = Annotated[
    str, typer.Option("--max-shard-size", help="Split into model-0000N-of-0000M.safetensors above this size.")
]


def convert(
    src: Annotated[
        str,
        typer.Argument(help="Checkpoint: a folder, a hub repo id (deepseek-community/* too), or an alias."),
    ],
    dst: Annotated[str, typer.Argument(help="Output folder (created; must be empty unless --overwrite).")],
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="Cast floating tensors: bfloat16 or float32 (default: keep)."),
    ] = None,
    max_shard_size: MaxShardSize = "5GB",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty DST (only once the new one is verified).")
    ] = False,
    quantize: Annotated[
        str,
        typer.Option(
            "--quantize",
            help="Store the LLM and image-head linears quantized (as --quantize would at load; the "
            "scheme is recorded in config.json and loads run it). Default: none.",
        ),
    ] = "none",
    as_json: options.Json = False,
    quiet: options.Quiet = False,
    revision: options.Revision = None,
) -> None:
    """Convert a checkpoint to safetensors, verify every tensor bit for bit, print DST.

    Reads .bin (no pickled code runs), sharded .bin, safetensors, and deepseek-community/* (mapped back).

    [b]Examples[/b]

      janus convert janus-pro-7b ~/models/janus-pro-7b-st

      janus convert deepseek-community/Janus-Pro-1B ./pro-1b --dtype bfloat16

      janus convert janus-pro-7b ~/models/janus-pro-7b-int8 --quantize int8
    """
    with console.handle_errors():
        check_dtype(dtype)
        from janus_cli.checkpoints.convert import parse_size
        from janus_cli.checkpoints.hub import resolve
        from janus_cli.runtime import choose_quantize

        choose_quantize(quantize)

        shard = parse_size(max_shard_size)
        folder = resolve(src, revision, progress=console.show_progress(quiet))
        result, seconds = write(folder, dst, dtype, shard, overwrite, quiet, "converting", quantize=quantize)
        if as_json:
            doc = {
                "path": str(result.folder),
                "source": str(folder),
                "source_layout": result.layout,
                "files": list(result.files),
                "tensors": result.tensors,
                "bytes": result.bytes,
                "dtype": dtype,
                "quantize": result.quantize,
                "seconds": round(seconds, 3),
            }
            typer.echo(json.dumps(doc, indent=2))
        else:
            typer.echo(str(result.folder))
        if not quiet:
            gb = result.bytes / 1e9
            console.err.print(
                f"{terminal.plural(result.tensors, 'tensor')} ({gb:.2f} GB) in "
                f"{terminal.plural(len(result.files), 'file')}, "
                f"verified, in {seconds:.1f}s",
                markup=False,
            )


def check_dtype(dtype: str | None) -> None:
    """--dtype of convert and merge, checked before any download."""
    if dtype is not None and dtype not in DTYPES:
        raise console.fail(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


def write(
    folder,
    dst: str,
    dtype: str | None,
    shard: int,
    overwrite: bool,
    quiet: bool,
    verb: str,
    adapter=None,
    quantize: str = "none",
):
    """checkpoints.convert of FOLDER into DST (ADAPTER merged, then QUANTIZE, if any) with a
    spinner on stderr; returns (ConvertResult, seconds)."""
    import time
    from pathlib import Path

    import torch

    from janus_cli.checkpoints.convert import convert

    t0 = time.perf_counter()
    with console.err.status(verb, spinner="dots") if console.show_progress(quiet) else _null() as spin:
        result = convert(
            folder,
            Path(dst),
            dtype=getattr(torch, dtype) if dtype else None,
            max_shard_bytes=shard,
            overwrite=overwrite,
            quantize=quantize,
            status=(lambda s: spin.update(s)) if spin is not None else (lambda s: None),
            adapter=adapter,
        )
    return result, time.perf_counter() - t0


def _null():
    import contextlib

    return contextlib.nullcontext(None)
