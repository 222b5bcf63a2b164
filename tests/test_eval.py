"""`seal-dist eval`: the comparison table's computation on a small case with known answers, its outputs,
and matching self-edits from a SEAL-schema file."""

import json
import random
from types import SimpleNamespace

import pytest

from seal_dist import config
from seal_dist.config import UserError
from seal_dist.evaluate import bar_chart, drawn, eval_jobs, joint_jobs, rl_curve, summarize
from seal_dist.tasks.interface import Condition
from seal_dist.tasks.knowledge.task import KnowledgeTask, file_self_edits, load_file
from tests.conftest import FAST_RUN, compose_config, shared_file


def rec(condition, context, seed, reward, questions=4, error=None):
    return {"condition": condition, "context_id": context, "repeat": seed, "reward": reward, "items": questions,
            "error": error}


EVAL = SimpleNamespace(bootstrap=2000, bootstrap_seed=0, confidence=0.95)


def conditions(*names: str, best_of: str | None = None) -> list[Condition]:
    return [Condition(name, {}, best_of=name == best_of) for name in names]


def test_summary_rows_have_known_values():
    records = [
        rec("no update", "a", 0, 0.25), rec("no update", "b", 0, 0.75, questions=2),
        rec("policy", "a", 0, 1.0), rec("policy", "b", 0, 0.5, questions=2),
        rec("policy", "a", 1, 0.5), rec("policy", "b", 1, 0.0, questions=2),
        rec("policy", "b", 2, None, questions=2, error="non-finite training loss at step 3"),  # not counted
    ]
    rows, gaps = summarize(records, conditions("no update", "policy"), EVAL)
    assert [(r["update"], r["updates"], r["items"]) for r in rows] == [("no update", 2, 6), ("policy", 4, 6)]
    assert rows[0]["accuracy"] == 0.5 and rows[1]["accuracy"] == pytest.approx(0.5)  # (0.75 + 0.25) / 2
    # two contexts: a resample holds a twice, b twice, or one of each
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == (0.25, 0.75)
    assert (rows[1]["ci_low"], rows[1]["ci_high"]) == (0.25, 0.75)
    assert gaps[0]["gap"] == pytest.approx(0.0) and not gaps[0]["significant"]
    assert (gaps[0]["ci_low"], gaps[0]["ci_high"]) == pytest.approx((-0.5, 0.5))


def test_a_consistent_gap_is_significant_and_a_noisy_one_is_not():
    rng = random.Random(0)
    contexts = [f"c{i}" for i in range(40)]
    base = {c: rng.random() * 0.5 for c in contexts}
    records = [rec("round 0", c, 0, base[c]) for c in contexts]
    records += [rec("steady", c, 0, base[c] + 0.05) for c in contexts]  # 0.05 better on every context
    records += [rec("noisy", c, 0, base[c] + 0.05 + rng.choice([-0.5, 0.5])) for c in contexts]
    _, gaps = summarize(records, conditions("round 0", "steady"), EVAL)
    assert gaps[0]["gap"] == pytest.approx(0.05) and gaps[0]["significant"]
    _, gaps = summarize(records, conditions("round 0", "noisy"), EVAL)
    assert gaps[0]["ci_low"] < 0 < gaps[0]["ci_high"] and not gaps[0]["significant"]


def test_a_context_that_failed_under_one_condition_is_left_out_of_all():
    records = [rec("no update", "a", 0, 0.0), rec("no update", "b", 0, 1.0),
               rec("policy", "a", 0, 0.5), rec("policy", "b", 0, None, error="out of memory")]
    rows, _ = summarize(records, conditions("no update", "policy"), EVAL)
    assert [r["accuracy"] for r in rows] == [0.0, 0.5] and [r["updates"] for r in rows] == [1, 1]


def test_a_best_of_condition_scores_each_context_by_its_best_update():
    records = [rec("oracle", "a", k, reward) for k, reward in enumerate([0.0, 1.0, 0.0])]
    records += [rec("oracle", "b", k, reward) for k, reward in enumerate([0.0, 0.0])]
    records += [rec("policy", c, k, 0.5) for c in "ab" for k in range(2)]
    rows, _ = summarize(records, conditions("policy", "oracle", best_of="oracle"), EVAL)
    assert [r["accuracy"] for r in rows] == [0.5, 0.5]  # oracle: a's best 1.0, b's best 0.0
    rows, _ = summarize(records, conditions("policy", "oracle"), EVAL)
    assert rows[1]["accuracy"] == pytest.approx(1 / 6)  # the mean: a 1/3, b 0


def test_eval_jobs_repeat_updates_per_seed_but_not_the_baseline():
    task = KnowledgeTask(compose_config("run_dir=x").task)
    contexts = task.load("heldout")[:2]
    edits = {"no update": {c.id: [None] for c in contexts}, "passage only": {c.id: [""] for c in contexts},
             "policy": {c.id: ["1. a", "1. b"] for c in contexts}}
    jobs = eval_jobs(task, contexts, [Condition(name, e) for name, e in edits.items()], seeds=[0, 1, 2])
    counts = {name: sum(1 for _, m in jobs if m["condition"] == name) for name in edits}
    assert counts == {"no update": 2, "passage only": 6, "policy": 12}
    assert len({j.job_id for j, _ in jobs}) == len(jobs)
    assert all(j.examples == () for j, m in jobs if m["condition"] == "no update")


def test_charts_are_written(tmp_path):
    bar_chart([{"update": "x", "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.7}], tmp_path / "eval.png")
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


def test_eval_command_on_seal_squad_files_with_a_model_given_by_path(tmp_path, model_cache, tiny_model,
                                                                     run_overrides):
    """The paper-scale path end to end: SQuAD passages and the paper's table (eval=paper_table: the SEAL
    release's self-edit files, a row each), any Hugging Face model by path (the tiny model here), a trained
    policy adapter given by path."""
    from seal_dist.evaluate import evaluate
    from seal_dist.learner.sft import PolicyTrainer
    from tests.conftest import fast_config

    base_val = shared_file("knowledge/base_val.json")
    cfg = fast_config(tmp_path, model_cache)
    policy = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path / "policy"), 1, 0).update(
        [("Passage:\n", "1. A fact.")], version=1, seed=0)
    cfg = compose_config(*FAST_RUN, *run_overrides, f"run_dir={tmp_path / 'run'}", "task=squad",
                         f"task.heldout_data={base_val}",
                         "model=hf", f"model.path={tiny_model}", "model.dtype=float32", "eval.contexts=2",
                         "eval.samples=1", "eval.seeds=[0,1]", "eval=paper_table",
                         f"eval.policy={policy['policy'].adapter}", "sampler.max_tokens=32", "inner.max_seq_len=128")
    rows = evaluate(cfg)
    questions = sum(len(c.questions) for c in load_file(str(base_val))[:2])
    assert [r["update"] for r in rows] == ["no update", "passage only", "round-0 self-edits", "policy v1 self-edits",
                                           "passage + model's own implications", "passage + GPT-4.1 implications",
                                           "SEAL after 2 rounds"]
    assert all(r["items"] == questions and 0 <= r["accuracy"] <= 1 for r in rows)
    assert [r["updates"] for r in rows] == [2, 4, 4, 4, 4, 4, 4]
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["rows"] == rows and (tmp_path / "run" / "eval.png").exists()
    assert [o["better"] for o in saved["orderings"]] == [r["update"] for r in rows[1:]]
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in rows)


def test_cpt_jobs_train_one_update_per_row_on_every_passage(tmp_path):
    """eval.mode=cpt: per row and seed one job, whose examples are every passage's self-edit sequences with
    each passage once, and whose prompts are all the passages' questions, each passage scored on its share."""
    cfg = compose_config("run_dir=x", "task=squad", f"task.heldout_data={shared_file('knowledge/base_val.json')}",
                         "eval=paper_table", "eval.samples=2")
    task = KnowledgeTask(cfg.task)
    contexts = task.load("heldout")[:3]
    before, after = task.conditions(contexts, cfg.eval)
    jobs = joint_jobs(task, contexts, before + after, seeds=[0, 1])
    assert [meta["condition"] for _, meta in jobs] == ["no update", "passage only", "passage only",
                                                      *(name for name in cfg.eval.self_edits_files for _ in (0, 1))]
    questions = [p for ctx in contexts for p in task.eval_prompts(ctx)]
    assert all(job.eval_prompts == tuple(questions) for job, _ in jobs)
    assert all([n for _, n in meta["shares"]] == [len(c.questions) for c in contexts] for _, meta in jobs)
    passages = {f"{c.title}\n{c.text}" for c in contexts}
    assert jobs[0][0].examples == () and {ex.completion for ex in jobs[1][0].examples} == passages
    own, texts = jobs[3][0], [t for c in contexts for e in after[0].edits[c.id] for t in task.training_texts(c, e)]
    assert [ex.completion for ex in own.examples] == list(dict.fromkeys(texts))  # each passage once, in order
    assert sum(ex.completion in passages for ex in own.examples) == 3 and len(own.examples) > 3


def test_cpt_grades_a_seeded_draw_of_the_questions_and_trains_on_every_passage(tmp_path):
    """eval.questions (the reference's v2: 500, seed 42): the same update, graded on n of all the questions;
    a passage none of whose questions was drawn still trains and has no share."""
    cfg = compose_config("run_dir=x", "task=squad", f"task.heldout_data={shared_file('knowledge/base_val.json')}",
                         "eval=paper_table", "eval.samples=2")
    task = KnowledgeTask(cfg.task)
    contexts = task.load("heldout")[:4]
    total = sum(len(c.questions) for c in contexts)
    graded = drawn(task, contexts, 3, 42)
    assert drawn(task, contexts, 3, 42) == graded != drawn(task, contexts, 3, 43) and drawn(task, contexts, None, 42) == contexts
    assert sum(len(c.questions) for c in graded) == 3 and [c.text for c in graded] == [c.text for c in contexts]
    assert all(set(g.questions) <= set(c.questions) for g, c in zip(graded, contexts))
    _, after = task.conditions(contexts, cfg.eval)
    [(full, _)] = joint_jobs(task, contexts, after[:1], seeds=[0])
    [(job, meta)] = joint_jobs(task, graded, after[:1], seeds=[0])
    assert job.examples == full.examples  # every passage's self-edits train, whatever was drawn
    assert job.eval_prompts == tuple(p for c in graded for p in task.eval_prompts(c))
    assert [n for _, n in meta["shares"]] == [len(c.questions) for c in graded if c.questions]
    with pytest.raises(UserError, match=f"eval.questions={total + 1}: the 4 contexts have {total} questions"):
        drawn(task, contexts, total + 1, 42)
    with pytest.raises(UserError, match="eval.questions=5: a number of questions .* in eval.mode=cpt"):
        config.validate(compose_config("run_dir=x", "eval.questions=5"))


def test_cpt_eval_on_the_shared_files_with_a_full_fine_tune(tmp_path, tiny_model, run_overrides):
    """The paper's CPT table in one command, short: the SEAL files' rows beside no update, passage only and
    round-0 self-edits, one full fine-tune per row, every passage's record from that one update."""
    from seal_dist.evaluate import evaluate

    cfg = compose_config(*FAST_RUN, *run_overrides, f"run_dir={tmp_path / 'run'}", "task=squad", "model=hf",
                         f"model.path={tiny_model}",
                         f"task.heldout_data={shared_file('knowledge/base_val.json')}", "model.dtype=float32",
                         "eval=paper_table", "eval.mode=cpt", "inner.engine=full", "inner.lr=1e-4", "eval.contexts=2",
                         "eval.samples=2", "eval.seeds=[0]", "sampler.max_tokens=32", "inner.max_seq_len=128",
                         "eval.questions=5")
    rows = evaluate(cfg)
    assert [r["update"] for r in rows] == ["no update", "passage only", "round-0 self-edits",
                                           *cfg.eval.self_edits_files]
    assert all(r["items"] == 5 for r in rows)  # the questions drawn
    graded = sum(1 for c in drawn(KnowledgeTask(cfg.task), KnowledgeTask(cfg.task).load("heldout")[:2], 5, 42)
                 if c.questions)
    assert all(r["updates"] == graded for r in rows)  # each graded passage's share of its row's one update
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == graded * len(rows) and len({r["job_id"] for r in records}) == len(rows)
    assert all(r["error"] is None and r["loss_after"] < r["loss_before"] for r in records if r["examples"])
