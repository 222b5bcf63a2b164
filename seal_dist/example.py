"""One fine-tuning example: what tasks produce and every trainer consumes (pretraining, the inner loop, the
learner). A module of its own so that the parts that only pass examples along (the job board) import no torch."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    prompt: str  # context (no loss, unless a job trains on all tokens)
    completion: str  # trained on; an EOS token is appended
