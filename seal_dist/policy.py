"""A version of the self-edit policy, as the parts of a run pass it to one another (no model loaded here:
the command line imports it before it checks a run's settings)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """One version of the self-edit policy: the model folder it runs on and the PEFT adapter applied to it
    (None: the model itself; version 0, and every version when `learner.merge` merges each round's adapter
    into a model folder of its own)."""

    version: int
    model: str
    adapter: str | None
