"""ReST-EM's selection of the self-edits to train on, on hand-made scores with known answers."""

from seal_dist.learner.rest_em import Scored, select


def scored(context: str, rewards: list[float], baseline: float) -> list[Scored]:
    return [Scored(context, k, f"prompt {context}", f"edit {context}{k}", r, baseline) for k, r in enumerate(rewards)]


SCORES = scored("a", [0.2, 0.6, 0.6, 0.4], baseline=0.5) + scored("b", [0.5, 0.5, 0.5, 0.5], baseline=0.0)


def kept(min_reward=None, **thresholds) -> list[tuple[str, int]]:
    return [(s.context_id, s.sample) for s in select(SCORES, min_reward=min_reward, **thresholds)]


def test_keeps_the_best_of_each_context_earliest_first_on_ties():
    assert kept(top_k=1, min_gain=None, min_advantage=None) == [("a", 1), ("b", 0)]
    assert kept(top_k=3, min_gain=None, min_advantage=None) == [("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("b", 2)]


def test_min_gain_drops_self_edits_that_do_not_beat_their_baseline_by_that_much():
    # a's best gains 0.1 over its baseline, b's 0.5
    assert kept(top_k=1, min_gain=0.2, min_advantage=None) == [("b", 0)]
    assert kept(top_k=4, min_gain=0.0, min_advantage=None) == [("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2), ("b", 3)]


def test_min_advantage_drops_self_edits_no_better_than_their_siblings():
    # a's mean reward is 0.45, so its 0.6s lead by 0.15 and its 0.4 trails; b's self-edits all tie
    assert kept(top_k=1, min_gain=None, min_advantage=0.01) == [("a", 1)]
    assert kept(top_k=3, min_gain=None, min_advantage=0.01) == [("a", 1), ("a", 2)]
    assert kept(top_k=1, min_gain=None, min_advantage=0.2) == []
    assert kept(top_k=1, min_gain=0.2, min_advantage=0.01) == []


def test_min_reward_keeps_only_self_edits_that_reach_it():
    # ARC's rule: keep every self-edit whose update solved its task (reward 1), whatever the baseline
    solved = scored("c", [1.0, 0.0, 1.0], baseline=0.0) + scored("d", [1.0, 0.0], baseline=1.0)
    found = select(solved, top_k=3, min_gain=None, min_advantage=None, min_reward=1.0)
    assert [(s.context_id, s.sample) for s in found] == [("c", 0), ("c", 2), ("d", 0)]
    assert kept(top_k=4, min_gain=None, min_advantage=None, min_reward=0.6) == [("a", 1), ("a", 2)]
