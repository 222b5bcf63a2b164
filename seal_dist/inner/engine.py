"""What an inner-loop engine is, and the failure rules every engine runs under (no Ray, no Hydra).

Three engines implement it: `sequential.SequentialEngine` (one PEFT adapter at a time, the reference's way),
`batched.BatchedEngine` (K adapters in one forward/backward per step) and `sequential.FullEngine` (every weight
trained, for continued pretraining; "a fresh adapter" below is then a fresh copy of the policy's weights)."""

from typing import Protocol

import torch

from seal_dist.inner.job import InnerJob, InnerResult, failed


class InnerEngine(Protocol):
    """Keeps one policy resident and applies jobs to it.

    `set_policy(version, adapter_path)` makes `version` (a frozen PEFT adapter; None: the base model) the
    model that later jobs update. `run(jobs)` trains a fresh adapter per job from that policy, answers each
    job's prompts with its adapted model and returns one result per job, in order; the jobs must all be for
    the resident policy version. A job whose update fails (a non-finite loss) gets a result with `error`
    set, and the others are unaffected; anything else that goes wrong (out of memory, a job that makes the
    model raise) raises, and leaves the engine ready for the next call.
    """

    policy_version: int

    def set_policy(self, version: int, adapter_path: str | None) -> None: ...

    def run(self, jobs: list[InnerJob]) -> list[InnerResult]: ...


def check_policy(jobs: list[InnerJob], version: int) -> None:
    for job in jobs:
        if job.policy_version != version:
            raise RuntimeError(f"job {job.job_id} is for policy v{job.policy_version}, worker holds v{version}")


def run_isolating_failures(engine: InnerEngine, jobs: list[InnerJob], worker: int) -> list[InnerResult]:
    """Runs the jobs together; a job that failed among others (or every job of a batch that raised: out of
    memory, a poison job) is run once more alone, and what fails alone is returned as failed with its
    reason."""
    try:
        results = engine.run(jobs)
    except Exception as e:
        _release_memory()
        reason = f"out of memory: {e}" if isinstance(e, torch.OutOfMemoryError) else f"{type(e).__name__}: {e}"
        if len(jobs) == 1:
            return [failed(jobs[0], worker, reason)]
        results = [failed(job, worker, f"{reason} (in a batch of {len(jobs)})") for job in jobs]
    if len(jobs) == 1:
        return results
    return [run_isolating_failures(engine, [job], worker)[0] if r.error else r for job, r in zip(jobs, results)]


def _release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
