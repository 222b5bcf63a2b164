"""ReST-EM's E-step: from the scored self-edits, keep the best ones per context as SFT data."""

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean


@dataclass(frozen=True)
class Scored:
    context_id: str
    sample: int  # index among the context's self-edits
    prompt: str
    self_edit: str
    reward: float  # mean over the inner-loop repeats
    baseline: float  # the context's accuracy without an update


def select(scored: list[Scored], top_k: int, min_gain: float | None, min_advantage: float | None,
           min_reward: float | None) -> list[Scored]:
    """The `top_k` highest-reward self-edits of each context (ties: the earlier sample). A threshold that
    is not None also drops a kept self-edit: `min_reward` unless its reward is at least that (ARC: solved),
    `min_gain` unless it beats its baseline by at least that much,
    `min_advantage` unless it beats the mean reward of its context's self-edits by at least that much (so a
    context whose self-edits all scored alike teaches nothing)."""
    by_context: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        by_context[s.context_id].append(s)
    kept = []
    for group in by_context.values():
        siblings = mean(s.reward for s in group)
        best = sorted(group, key=lambda s: (-s.reward, s.sample))[:top_k]
        kept += [
            s for s in best
            if (min_reward is None or s.reward >= min_reward)
            and (min_gain is None or s.reward - s.baseline >= min_gain)
            and (min_advantage is None or s.reward - siblings >= min_advantage)
        ]
    return kept
