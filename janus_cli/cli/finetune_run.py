"""What `janus finetune` shows and writes around the training loop: the bar, the adapter and
resumable state at each save, the loss curve and sample grid, and Ctrl-C as "save and stop"."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import typer

from janus_cli.cli import console, terminal
from janus_cli.cli.finetune_plots import LOSS_PNG, loss_curve, sample_grid


def run(opts, settings_for, samples: int, quiet: bool) -> None:
    from janus_cli.checkpoints.adapter import CONFIG_FILE, WEIGHTS_FILE
    from janus_cli.training.prepare import prepare

    out = opts.out
    if opts.resume and not (out / CONFIG_FILE).exists():
        raise console.fail(f"--resume: {out} holds no adapter to continue")
    if not opts.resume and any((out / n).exists() for n in (CONFIG_FILE, WEIGHTS_FILE)):
        raise console.fail(f"{out}: already holds an adapter; --resume continues it, or choose another -o")
    with terminal.progress(quiet, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        p = prepare(opts, settings_for, progress)
    for message in p.skipped:
        console.err.print(f"skipped: {message}", markup=False)
    trainer, s = p.trainer, p.trainer.settings
    saver = Saver(opts, p, samples, quiet)
    with terminal.progress(quiet) as bar, stop_on_interrupt(trainer, quiet):
        task = bar.add_task("training", total=s.steps, completed=trainer.step)
        for event in trainer.train(p.examples, p.features, p.session.tokenizer.special):
            if hasattr(event, "loss"):
                bar.update(
                    task,
                    completed=event.step,
                    description=f"loss {event.loss:.4f}  lr {event.lr:.2e}  "
                    f"{event.samples_per_s:.2f} samples/s",
                )
            else:
                saver.save(event)
    if p.skipped:
        console.err.print(f"{terminal.plural(len(p.skipped), 'record')} skipped", markup=False)
    if trainer.stop_requested and trainer.step < s.steps:
        console.err.print(
            f"stopped at step {trainer.step}/{s.steps}; saved. Continue with the same command and --resume",
            markup=False,
        )
        raise typer.Exit(130)
    terminal.result(str(out))


class Saver:
    """Writes the adapter, the resumable state and the pictures at each Save event."""

    def __init__(self, opts, prepared, samples: int, quiet: bool):
        self.opts, self.p, self.quiet = opts, prepared, quiet
        self.prompts = list(dict.fromkeys(prepared.prompts))[:samples]
        self.base = None  # the base model's sample images: made once

    def save(self, event) -> None:
        from janus_cli.checkpoints.adapter import AdapterConfig, write_adapter
        from janus_cli.checkpoints.hub import spec_for
        from janus_cli.training.lora import TARGETS
        from janus_cli.training.state import adapter_tensors, save_state

        opts, p, trainer = self.opts, self.p, self.p.trainer
        spec = spec_for(opts.model)
        config = AdapterConfig(
            r=opts.rank,
            lora_alpha=opts.alpha,
            lora_dropout=opts.dropout,
            target_modules=TARGETS,
            modules_to_save=p.heads,
            base_model_name_or_path=spec.repo if spec else opts.model,
            janus={"task": opts.task, "family": p.session.config.family, "steps": trainer.step},
        )
        write_adapter(opts.out, config, adapter_tensors(trainer, p.heads), overwrite=True)
        save_state(opts.out, trainer, opts.run_settings(trainer.settings))
        written = [loss_curve(trainer.losses, opts.out / LOSS_PNG)]
        if self.prompts:
            from janus_cli.training.samples import sample_images

            seed = trainer.settings.seed
            if self.base is None:
                self.base = sample_images(p.session, trainer.loras, self.prompts, seed, adapter=False)
            tuned = sample_images(p.session, trainer.loras, self.prompts, seed, adapter=True)
            written.append(
                sample_grid(self.base, tuned, self.prompts, opts.out / f"samples-{event.step:06d}.png")
            )
        if not self.quiet:
            loss = trainer.losses[-1]
            terminal.status_lines(
                [
                    f"step {event.step}/{trainer.settings.steps}: loss {loss:.4f}; saved {opts.out} "
                    f"({', '.join(Path(w).name for w in written)})"
                ]
            )


@contextlib.contextmanager
def stop_on_interrupt(trainer, quiet: bool):
    """The first Ctrl-C asks the trainer to save and stop after its current step; a second one
    stops at once (nothing more is saved)."""

    def first(signum, frame) -> None:
        trainer.request_stop()
        if not quiet:
            terminal.status_lines(["stopping after this step (Ctrl-C again to quit without saving)"])
        signal.signal(signal.SIGINT, signal.default_int_handler)

    before = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
