"""`seal-dist grid`'s summary over cells, on known values."""

import json

import pytest

from seal_dist.grid import POLICY, ROUND0, cell_result, column, summarize


def cell(name, none, passage, round0, policy, significant):
    return {"cell": name, "accuracy": {"no update": none, "passage only": passage, "round 0": round0, "policy": policy},
            "policy_gap": {"significant": significant}, "policy_trained": True, "policy_no_update": [0.1, 0.1]}


def test_summary_counts_wins_and_the_spread_of_the_gaps():
    cells = [cell("a", 0.1, 0.5, 0.6, 0.8, True), cell("b", 0.0, 0.5, 0.7, 0.8, True),
             cell("c", 0.2, 0.6, 0.65, 0.6, False)]
    s = summarize(cells)
    assert (s["cells"], s["policy_wins"], s["policy_wins_significant"]) == (3, 2, 2)
    assert s["gap_mean"] == pytest.approx((0.2 + 0.1 - 0.05) / 3)
    assert s["gap_sd"] == pytest.approx(0.1258305739)  # sample sd of 0.2, 0.1, -0.05
    assert s["mean"]["policy"] == pytest.approx(2.2 / 3) and s["sd"]["no update"] == pytest.approx(0.1)
    assert s["orderings_hold_in_mean"] and s["round0_wins"] == 3 and s["round0_over"] == "passage only"


def test_an_ordering_broken_in_the_mean_is_reported():
    s = summarize([cell("a", 0.1, 0.6, 0.5, 0.8, True), cell("b", 0.1, 0.6, 0.55, 0.7, True)])
    assert not s["orderings_hold_in_mean"] and s["policy_wins"] == 2 and s["round0_wins"] == 0


def test_the_rows_are_the_tasks_own():
    arc = {"cell": "a", "accuracy": {"in-context (no TTT)": 0.0, "round 0": 0.2, "policy": 0.5, "oracle configuration": 0.9},
           "policy_gap": {"significant": True}, "policy_trained": True, "policy_no_update": [0.0, 0.0]}
    s = summarize([arc, arc])
    assert list(s["mean"]) == list(arc["accuracy"]) and s["round0_over"] == "in-context (no TTT)"
    assert s["orderings_hold_in_mean"] and s["policy_wins"] == 2 and s["gap_sd"] == 0.0


def test_columns_name_the_policies_by_role():
    assert [column(n) for n in ("round-0 self-edits", "policy v4 self-edits", "no update")] == ["round 0", "policy", "no update"]


def test_a_cell_whose_learner_kept_nothing_has_round_0_as_its_policy(tmp_path):
    rows = [{"update": "in-context (no TTT)", "accuracy": 0.0}, {"update": "round-0 self-edits", "accuracy": 0.1},
            {"update": "oracle configuration", "accuracy": 0.9}]  # no policy row: the run's final policy is v0
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "eval.json").write_text(json.dumps({"rows": rows, "orderings": []}))
    (tmp_path / "summary.json").write_text(json.dumps({"rounds": [{"heldout_baseline": 0.0}],
                                                       "final": {"heldout_baseline": 0.0}}))
    c = cell_result(tmp_path, 1, 1000)
    assert list(c["accuracy"]) == ["in-context (no TTT)", ROUND0, POLICY, "oracle configuration"]
    assert c["accuracy"][POLICY] == 0.1 and not c["policy_trained"] and c["policy_gap"]["gap"] == 0.0
    assert summarize([c, c])["policies_trained"] == 0
