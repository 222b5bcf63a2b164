"""`seal-dist eval`: the comparison table's computation on a small case with known answers, its outputs,
and matching self-edits from a SEAL-schema file."""

import json

import pytest

from seal_dist.evaluate import bar_chart, eval_jobs, file_self_edits, rl_curve, summarize
from seal_dist.tasks.knowledge import KnowledgeTask, load_file
from tests.conftest import compose_config, shared_file


def rec(condition, context, seed, reward, questions=4):
    return {"condition": condition, "context_id": context, "repeat": seed, "reward": reward, "questions": questions}


def test_summary_rows_have_known_values():
    records = [
        rec("no update", "a", 0, 0.25), rec("no update", "b", 0, 0.75, questions=2),
        rec("policy", "a", 0, 1.0), rec("policy", "b", 0, 0.5, questions=2),
        rec("policy", "a", 1, 0.5), rec("policy", "b", 1, 0.0, questions=2),
    ]
    rows = summarize(records, ["no update", "policy"])
    assert rows[0] == {"update": "no update", "accuracy": 0.5, "spread": 0.0, "updates": 2, "questions": 6}
    assert rows[1]["accuracy"] == pytest.approx(0.5)
    assert rows[1]["spread"] == pytest.approx(0.25)  # per-seed means 0.75 and 0.25
    assert rows[1]["updates"] == 4 and rows[1]["questions"] == 6


def test_eval_jobs_repeat_updates_per_seed_but_not_the_baseline():
    task = KnowledgeTask(compose_config("run_dir=x").task)
    contexts = task.load("heldout")[:2]
    edits = {"no update": {c.id: [None] for c in contexts}, "passage only": {c.id: [""] for c in contexts},
             "policy": {c.id: ["1. a", "1. b"] for c in contexts}}
    jobs = eval_jobs(task, contexts, edits, seeds=[0, 1, 2])
    counts = {name: sum(1 for _, m in jobs if m["condition"] == name) for name in edits}
    assert counts == {"no update": 2, "passage only": 6, "policy": 12}
    assert len({j.job_id for j, _ in jobs}) == len(jobs)
    assert all(j.train_texts == () for j, m in jobs if m["condition"] == "no update")


def test_charts_are_written(tmp_path):
    bar_chart([{"update": "x", "accuracy": 0.5, "spread": 0.1}], tmp_path / "eval.png")
    rl_curve({"rounds": [{"round": 0, "heldout_accuracy": 0.1}], "final": {"policy_version": 1, "heldout_accuracy": 0.2}},
             tmp_path / "curve.png")
    assert (tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "curve.png").stat().st_size > 0


def test_file_self_edits_are_matched_by_passage():
    base = load_file(str(shared_file("knowledge/base_val.json")))[:3]
    gpt = shared_file("knowledge/gpt4_1_val.json")
    found = file_self_edits(str(gpt), base, samples=2)
    records = {(r["title"], r["context"]): r for r in json.loads(gpt.read_text())}
    for ctx in base:
        assert found[ctx.id] == records[(ctx.title, ctx.text)]["completions"][:2]


def test_file_without_the_passage_is_an_error(tmp_path):
    task = KnowledgeTask(compose_config("run_dir=x").task)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"title": "t", "context": "c", "questions": [{"question": "q", "answer": "a"}],
                                  "completions": ["x"]}]))
    with pytest.raises(ValueError, match="no completions for the held-out passage"):
        file_self_edits(str(other), task.load("heldout")[:1], samples=1)
