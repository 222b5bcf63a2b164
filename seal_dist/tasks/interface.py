"""What the outer loop, `seal-dist eval` and the inner loop know of a domain: the task interface, and the
task a config names. Knowledge incorporation (`tasks/knowledge/`) and few-shot ARC (`tasks/arc/`) implement it.
"""

from dataclasses import dataclass
from typing import Any, Protocol

from omegaconf import DictConfig

from seal_dist.example import Example
from seal_dist.inner.job import InnerJob


@dataclass(frozen=True)
class Condition:
    """An update `seal-dist eval` compares beside the policies' self-edits: the self-edits applied per context
    (None: no update). With `best_of` a context scores its best update (an oracle), not their mean."""

    name: str
    edits: dict[str, list[str | None]]
    best_of: bool = False


class Task(Protocol):
    """A context has an `id`. Self-edits are untrusted text: one that does not parse is a value with a reason
    (`parse_failure`), and its job trains nothing."""

    def load(self, split: str) -> list[Any]:
        """The `train` or `heldout` contexts."""

    def prompt(self, ctx: Any) -> str:
        """The prompt the policy writes a self-edit for."""

    def parse_failure(self, self_edit: str) -> str | None:
        """Why the self-edit does not parse (naming the field); None where it does."""

    def make_job(self, job_id: str, ctx: Any, self_edit: str | None, policy_version: int, seed: int) -> InnerJob:
        """The inner-loop update a self-edit asks for (None: no update, the context's baseline)."""

    def score(self, ctx: Any, generations: tuple[str, ...]) -> float:
        """The reward: how well the updated model answered the job's evaluation prompts."""

    def items(self, ctx: Any) -> int:
        """How many graded items (questions, test inputs) the context has."""

    def keep_items(self, ctx: Any, keep: tuple[int, ...]) -> Any:
        """The context graded on its items `keep` (indices, in order) only; its update is the same."""

    def close(self) -> None:
        """Stops what the task started on the cluster (the judge's server); called before Ray shuts down."""

    def counters(self) -> dict[str, int]:
        """What grading has cost so far in this process (the judge's calls and cache hits), for the metrics."""

    def describe(self, ctx: Any, self_edit: str | None) -> dict[str, float]:
        """What a self-edit writes or chooses, as numbers `seal-dist eval` averages per row ({}: no update)."""

    def conditions(self, contexts: list[Any], eval_cfg: DictConfig) -> tuple[list[Condition], list[Condition]]:
        """The updates `seal-dist eval` compares before the policies' rows, and after them."""

    def use_tokenizer(self, tokenizer: Any) -> None:
        """The model's tokenizer, where the task measures lengths in tokens."""

    def pretraining_spec(self) -> dict:
        """Everything that determines `pretraining_corpus` (the tiny model's cache key)."""

    def pretraining_corpus(self, seed: int) -> list[Example]:
        """The tiny model's pretraining texts for this domain."""


def create(cfg: DictConfig) -> Task:
    """The task `cfg.task` configures, given the whole config for what it shares with the inner loop."""
    if cfg.task.name == "knowledge":
        from seal_dist.tasks.knowledge.task import KnowledgeTask

        return KnowledgeTask(cfg.task)
    from seal_dist.tasks.arc.task import ArcTask

    return ArcTask(cfg.task, cfg.inner)
