"""The contract between a task and the inner-loop workers: one LoRA update and its evaluation."""

from dataclasses import dataclass


@dataclass(frozen=True)
class InnerJob:
    job_id: str
    policy_version: int  # the policy the update is applied to
    train_texts: tuple[str, ...]  # empty: evaluate the policy without an update (baseline)
    eval_prompts: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class InnerResult:
    job_id: str
    generations: tuple[str, ...]  # one per eval prompt, greedy
    loss_before: float | None  # mean loss on train_texts before the update; None without training
    loss_after: float | None  # the same after the update
    train_s: float
    eval_s: float
    worker: int
