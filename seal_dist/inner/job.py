"""The contract between a task and the inner-loop engines: one LoRA update and its evaluation, in terms that
know no domain (training pairs, evaluation prompts, the update's own settings)."""

from dataclasses import dataclass

from seal_dist.example import Example


@dataclass(frozen=True)
class InnerJob:
    job_id: str
    policy_version: int  # the policy the update is applied to
    examples: tuple[Example, ...]  # training pairs; empty: evaluate the policy without an update (baseline)
    loss_on_prompt: bool  # the loss covers each example's prompt too, not only its completion
    eval_prompts: tuple[str, ...]  # answered greedily by the updated model
    seed: int  # the adapter's initialisation and the order of its data
    lr: float | None  # set where the self-edit chooses it (already clamped by the task); None: inner.lr
    epochs: int | None  # likewise; None: inner.epochs; 0: no training

    def schedule(self, lr: float, epochs: int) -> tuple[float, int]:
        """This job's learning rate and epochs, given the inner loop's configured ones."""
        return (lr if self.lr is None else self.lr), (epochs if self.epochs is None else self.epochs)


@dataclass(frozen=True)
class InnerResult:
    job_id: str
    generations: tuple[str, ...]  # one per eval prompt, greedy; () when the job failed
    loss_before: float | None  # mean loss on the examples before the update; None without training
    loss_after: float | None  # the same after the update
    train_s: float  # this job's share of its batch's training time
    eval_s: float  # this job's share of its batch's answering time
    worker: int
    error: str | None  # why the job failed (it raised, a non-finite loss, out of memory); None: it succeeded
    attempts: int = 1  # runs of the job: the job board hands a failed one out again (inner.job_retries)


def failed(job: InnerJob, worker: int, error: str) -> InnerResult:
    return InnerResult(job.job_id, (), None, None, 0.0, 0.0, worker, error)
