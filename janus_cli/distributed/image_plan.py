"""The image commands' work on Ray: what each actor makes, the local engine's forward batches
as units, the images a manifest already holds, and the prompt checks done before any work."""

from __future__ import annotations

from dataclasses import dataclass, replace

from janus_cli.cli.jobs import Job


@dataclass(frozen=True)
class ImageTask:
    """Which pipeline the actors run, and how the local engine would batch it."""

    family: str  # "janus" (generate) or "janusflow" (flow-generate)
    command: str  # named in the family error
    batch_size: int  # images per forward
    noise: str = "per-image"  # janusflow: "per-image" (image k from seed + k) or "official"
    vae: str | None = None  # janusflow

    @property
    def splits(self) -> bool:
        """Whether a job may be cut into batches: not with the official noise, one draw of all
        of a job's latents from its seed."""
        return self.noise == "per-image"

    def seed_of(self, job: Job, k: int) -> int:
        """The seed recorded for image K of JOB (as the local commands record it)."""
        return job.seed + k if self.splits else job.seed


def done_images(records: list[dict]) -> set[tuple[int, str, int]]:
    """(index, prompt, seed) of each manifest record with a written image (failed ones are redone)."""
    return {(r.get("index"), r.get("prompt"), r.get("seed")) for r in records if "path" in r and "error" not in r}


def pending(work: list[Job], task: ImageTask, done: set[tuple[int, str, int]]) -> list[Job]:
    """The units still to make, each one forward batch of the local engine (image k keeps
    index first + k and seed + k), less the images in DONE. A job that cannot be split runs
    whole while any of its images is missing."""
    units = []
    for job in work:
        missing = [k for k in range(job.n) if (job.first + k, job.prompt, task.seed_of(job, k)) not in done]
        if not task.splits:
            units += [job] if missing else []
            continue
        for start in range(0, job.n, task.batch_size):  # cut where the local engine cuts, then drop what is done
            batch = [k for k in missing if start <= k < start + task.batch_size]
            units += [replace(job, n=len(run), seed=job.seed + run[0], first=job.first + run[0]) for run in _runs(batch)]
    return units


def _runs(ks: list[int]) -> list[list[int]]:
    """KS (ascending) as runs of consecutive numbers."""
    runs: list[list[int]] = []
    for k in ks:
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


def check_prompts(ref, task: ImageTask, prompts: set[str], quiet: bool) -> None:
    """Refuse a checkpoint of the wrong family or an over-long prompt before any work, as the
    local engine does, from the checkpoint's config and tokenizer only (no weights loaded)."""
    import torch

    from janus_cli.checkpoints.hub import resolve
    from janus_cli.cli.common import show_progress
    from janus_cli.config import JanusConfig
    from janus_cli.pipelines.session import Session
    from janus_cli.tokenizer import Tokenizer

    folder = resolve(ref.model, ref.revision, progress=show_progress(quiet))
    config = JanusConfig.from_file(folder / "config.json")
    tokenizer = Tokenizer(folder, flow=config.family == "janusflow")
    light = Session(ref.model, folder, config, None, tokenizer, None, torch.device("cpu"), torch.float32)  # no model: checks only
    light.require(task.family, task.command)
    if task.family == "janus":
        from janus_cli.pipelines.text_to_image import prompt_ids as check
    else:
        from janus_cli.pipelines.text_to_image_flow import flow_prompt_ids as check
    for prompt in prompts:
        check(light, prompt)
