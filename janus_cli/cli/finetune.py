"""`janus finetune`: train a LoRA adapter for text-to-image or for describing images."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from janus_cli.cli import console, options

TRAINING = "Training"


class Task(str, Enum):
    generate = "generate"
    describe = "describe"


def finetune(
    task: Annotated[
        Task, typer.Option("--task", help="generate (text to image) or describe (image to text).")
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="A folder of images with same-name .txt captions, or a .jsonl file: "
            '{"image", "prompt"} (generate); {"image", "question", "answer"} or chat "messages" (describe).',
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="The adapter folder to write (PEFT format).")],
    rank: Annotated[int, typer.Option("--rank", min=1, rich_help_panel=TRAINING, help="LoRA rank r.")] = 16,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0, rich_help_panel=TRAINING, help="LoRA alpha (scale alpha/r).")
    ] = 32.0,
    dropout: Annotated[
        float, typer.Option("--dropout", min=0.0, max=0.9, rich_help_panel=TRAINING, help="LoRA dropout.")
    ] = 0.05,
    lr: Annotated[
        float, typer.Option("--lr", min=0.0, rich_help_panel=TRAINING, help="Peak learning rate.")
    ] = 1e-4,
    epochs: Annotated[
        float | None,
        typer.Option("--epochs", min=0.0, rich_help_panel=TRAINING, help="Passes over the data (default 1)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", min=1, rich_help_panel=TRAINING, help="Optimizer steps (instead of --epochs)."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, rich_help_panel=TRAINING, help="Samples per forward.")
    ] = 1,
    grad_accum: Annotated[
        int,
        typer.Option("--grad-accum", min=1, rich_help_panel=TRAINING, help="Forwards per optimizer step."),
    ] = 1,
    warmup: Annotated[
        int,
        typer.Option("--warmup", min=0, rich_help_panel=TRAINING, help="Linear warmup steps, then cosine."),
    ] = 0,
    seed: Annotated[
        int, typer.Option("--seed", "-s", min=0, rich_help_panel=TRAINING, help="Seeds init, order, dropout.")
    ] = 0,
    prompt_dropout: Annotated[
        float,
        typer.Option(
            "--prompt-dropout",
            min=0.0,
            max=1.0,
            rich_help_panel=TRAINING,
            help="generate: share of samples trained on the unconditional prompt (keeps CFG working).",
        ),
    ] = 0.1,
    train_head: Annotated[
        bool,
        typer.Option(
            "--train-head", rich_help_panel=TRAINING, help="Also train gen_head and gen_aligner fully."
        ),
    ] = False,
    no_checkpointing: Annotated[
        bool,
        typer.Option(
            "--no-checkpointing",
            rich_help_panel=TRAINING,
            help="Keep every block's activations (faster, more memory) instead of recomputing them.",
        ),
    ] = False,
    question: Annotated[
        str,
        typer.Option("--question", help="describe: the question a folder's captions answer."),
    ] = "Describe this image in detail.",
    save_every: Annotated[
        int,
        typer.Option(
            "--save-every", min=0, rich_help_panel=options.OUTPUT, help="Save every N steps (0: at the end)."
        ),
    ] = 0,
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            min=0,
            rich_help_panel=options.OUTPUT,
            help="generate: prompts in the base-vs-adapter grid written at each save (0: none).",
        ),
    ] = 4,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run saved in --output (Ctrl-C saves one).")
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", "-k", help="Skip bad records (counted at the end) instead of stopping."),
    ] = False,
    quiet: options.Quiet = False,
    model: options.Model = "janus-pro-1b",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    revision: options.Revision = None,
) -> None:
    """Train a LoRA adapter; prints the adapter folder. Use it with --adapter on any command.

    [b]Examples[/b]

      janus finetune --task generate --data photos/ -o my-style --steps 300

      janus finetune --task describe --data captions.jsonl -o my-captions --epochs 3

      janus generate "a cat, in my style" --adapter my-style
    """
    with console.handle_errors():
        from janus_cli.cli.finetune_run import run
        from janus_cli.training.loop import Settings
        from janus_cli.training.prepare import Options

        if epochs is not None and steps is not None:
            raise console.fail("give --epochs or --steps, not both")
        out = Path(output)
        opts = Options(
            model,
            task.value,
            Path(data),
            out,
            rank,
            alpha,
            dropout,
            train_head,
            question,
            keep_going,
            resume,
            device,
            dtype,
            revision,
        )
        per_step = batch_size * grad_accum

        def settings_for(n: int) -> Settings:
            total = steps if steps is not None else max(1, math.ceil((epochs or 1.0) * n / per_step))
            return Settings(
                task.value,
                total,
                batch_size,
                grad_accum,
                lr,
                warmup,
                seed,
                prompt_dropout,
                save_every,
                not no_checkpointing,
            )

        run(opts, settings_for, samples, quiet)
