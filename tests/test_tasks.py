"""The knowledge task, grading and the synthetic world: pure functions, no model."""

import json
import re

import pytest

from seal_dist.tasks.knowledge import grading
from seal_dist.tasks.knowledge import world as synthetic
from seal_dist.tasks.knowledge.task import DataError, KnowledgeTask, load_file
from seal_dist.tasks.knowledge.segments import self_edit_segments, update_texts
from tests.conftest import compose_config, shared_file


@pytest.fixture(scope="module")
def task():
    return KnowledgeTask(compose_config("run_dir=unused").task)


def test_grading_normalises_like_squad():
    assert grading.normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert grading.exact_match("the Pelmora.", "Pelmora") == 1.0
    assert grading.exact_match("Pelmora river", "Pelmora") == 0.0
    assert grading.f1("Pelmora river", "Pelmora") == pytest.approx(2 / 3)
    assert grading.f1("", "Pelmora") == 0.0
    assert grading.first_line("\n  cello \nviolin") == "cello"
    assert grading.first_sentence("\n flute. Kim was born in the year 1712.\nviolin") == "flute."
    assert grading.first_sentence(" 18th century") == "18th century"


def test_self_edit_segments_follow_the_reference_rules():
    edit = "Here are the implications:\n1. A was born in B.\n2. A played the harp.\n---\nA rewrite.\n\nAnother line."
    assert self_edit_segments(edit, False) == [
        "1. A was born in B.", "2. A played the harp.", "A rewrite.", "Another line."
    ]
    # a first line is kept when no numbered list follows it
    assert self_edit_segments("Intro\nnot a list", False) == ["Intro", "not a list"]
    assert self_edit_segments("  \n", False) == []
    # the leading-line rule looks at the whole self-edit's first two lines, not at each `---` block's
    blocks = "Sure, here they are.\n---\nImplications:\n1. A was born in B."
    assert self_edit_segments(blocks, False) == ["Sure, here they are.", "Implications:", "1. A was born in B."]
    assert self_edit_segments("Intro\n---\n1. x\n2. y", False) == ["1. x", "2. y"]  # alone in its block, yet dropped
    # the newer reference: only the text after an "Implications:" line
    assert self_edit_segments("Let me think.\nImplications:\n1. x\n2. y", True) == ["1. x", "2. y"]
    assert self_edit_segments("Let me think.\nImplications:\n1. x\n2. y", False) == ["Let me think.", "Implications:", "1. x", "2. y"]


def test_self_qa_self_edits_keep_each_question_with_its_answer():
    qa = "Where was A born?\nAnswer: In B.\nQuestion 2: What did A play?\nAnswer: The harp.\n\nQuestion 3: When?\nAnswer: 1712."
    assert self_edit_segments(qa, False) == [
        "Question 1: Where was A born?\nAnswer: In B.", "Question 2: What did A play?\nAnswer: The harp.",
        "Question 3: When?\nAnswer: 1712.",
    ]
    assert self_edit_segments("Question 1: Who?\nAnswer: A.", False) == ["Question 1: Who?\nAnswer: A."]
    # questions without answers are not self-QA: one sequence per line
    assert self_edit_segments("Who?\nQuestion 2: Where?", False) == ["Who?", "Question 2: Where?"]


@pytest.mark.parametrize("name", ["base_val", "gpt4_1_val", "iter2_val", "iter0_train"])
def test_the_reference_rules_on_every_self_edit_of_the_shared_files(name):
    """Each self-edit of the SEAL release's files: its sequences are its non-empty lines (no `---`), in order,
    title-prefixed, the passage last; the first line is dropped exactly when it is not a list item and the
    second line is one; with implications_only, nothing before an "Implications:" line trains; max_sequences caps."""
    records = json.loads(shared_file(f"knowledge/{name}.json").read_text())
    dropped = 0
    for r in records:
        for edit in r["completions"]:
            lines = [line.strip() for line in edit.splitlines() if line.strip() and line.strip() != "---"]
            drop = len(lines) >= 2 and not lines[0].startswith("1.") and lines[1].startswith("1.")
            dropped += drop
            texts = update_texts(r["title"], r["context"], edit, None, False)
            assert texts[-1] == f"{r['title']}\n{r['context']}"
            assert [t.removeprefix(f"{r['title']}\n") for t in texts[:-1]] == lines[drop:]
            after = edit.split("\nImplications:", 1)[-1]
            assert all(s in after for s in self_edit_segments(edit, True))
            assert len(update_texts(r["title"], r["context"], edit, 30, True)) <= 31
    assert (dropped > 0) == (name == "gpt4_1_val")  # GPT-4.1 introduces its lists with a sentence


def test_training_texts_and_eval_prompts(task):
    ctx = task.load("heldout")[0]
    assert task.training_texts(ctx, None) == ()
    assert task.training_texts(ctx, "") == (f"{ctx.title}\n{ctx.text}",)
    texts = task.training_texts(ctx, "1. x\n2. y")
    assert texts == (f"{ctx.title}\n1. x", f"{ctx.title}\n2. y", f"{ctx.title}\n{ctx.text}")
    prompts = task.eval_prompts(ctx)
    assert len(prompts) == len(ctx.questions)
    # no passage in the prompt; the synthetic task asks sentences to complete under the title
    assert ctx.text not in prompts[0] and prompts[0] == f"{ctx.title}\n{ctx.questions[0].question}"
    assert task.prompt(ctx).endswith("Implications:\n") and ctx.text in task.prompt(ctx)


def test_answers_stated_by_an_update(task):
    """The passage states each stated fact's answer and none of the implied ones; a self-edit writing out
    every implication states them all."""
    ctx = task.load("heldout")[0]
    w = task.cfg.world
    entity = next(e for e in synthetic.make_entities(w.seed, w.num_train + w.num_heldout, w.facts_per_passage,
                                                     synthetic.TASK, attributes=synthetic.attributes_named(
                                                         list(w.attributes), "w")) if e.name == ctx.title)
    implications = "\n".join(synthetic.stated_facts(entity) + synthetic.implied_facts(entity))
    assert task.describe(ctx, None) == {}
    assert task.describe(ctx, "") == {"answers_stated": 0.5}  # a stated and an implied question per fact
    assert task.describe(ctx, implications) == {"answers_stated": 1.0}
    assert grading.contains("Kim worked as a baker.", "baker") and not grading.contains("a bakery", "baker")


def test_score_is_accuracy_over_questions(task):
    ctx = task.load("heldout")[0]
    answers = [q.answer for q in ctx.questions]
    assert task.score(ctx, tuple(answers)) == 1.0
    assert task.score(ctx, tuple(["wrong"] + answers[1:])) == pytest.approx(1 - 1 / len(answers))
    recited = [f" {a}. {ctx.title} was born in the year 1712.\nmore" for a in answers]  # a cloze's sentence ends
    assert task.score(ctx, tuple(recited)) == 1.0
    assert task.score(ctx, tuple(f"{a} and more." for a in answers)) == 0.0
    with pytest.raises(ValueError):
        task.score(ctx, tuple(answers[:-1]))


def test_synthetic_world_is_seeded_with_disjoint_splits():
    a = synthetic.make_split(3, 20, 10, 4)
    assert a == synthetic.make_split(3, 20, 10, 4)
    assert a != synthetic.make_split(4, 20, 10, 4)
    train, held = {r["title"] for r in a["train"]}, {r["title"] for r in a["heldout"]}
    assert len(train) == 20 and len(held) == 10 and not train & held
    for rec in a["train"]:
        assert len(rec["questions"]) == 8
        stated, implied = rec["questions"][0::2], rec["questions"][1::2]
        # stated answers are in the passage, implied ones are not, and no question contains its answer
        assert all(re.search(rf"\b{q['answer']}\b", rec["context"]) for q in stated)
        assert not any(re.search(rf"\b{q['answer']}\b", rec["context"]) for q in implied)
        assert not any(q["answer"] in q["question"] for q in rec["questions"])


def test_a_world_states_facts_about_its_attributes_only():
    attributes = synthetic.attributes_named(["trade", "pet"], "task.world.attributes")
    assert [a.key for a in attributes] == ["trade", "pet"]
    for entity in synthetic.make_entities(2, 50, 2, synthetic.TASK, attributes=attributes):
        assert sorted(a.key for a, _ in entity.facts) == ["pet", "trade"]
    assert all(len(rec["questions"]) == 4 for rec in synthetic.make_split(2, 5, 5, 2, attributes)["train"])
    with pytest.raises(ValueError, match="facts_per_passage must be in 1..2"):
        synthetic.make_split(2, 5, 5, 3, attributes)
    with pytest.raises(ValueError, match="task.world.attributes must be a non-empty subset of .*'colour'"):
        synthetic.attributes_named(["trade", "colour"], "task.world.attributes")


def test_task_people_are_new_to_the_pretrained_model():
    pretraining = {e.name for e in synthetic.make_entities(0, 1000, 4, synthetic.PRETRAINING)}
    task = {e.name for e in synthetic.make_entities(0, 1000, 4, synthetic.TASK)}
    assert len(pretraining) == len(task) == 1000 and not pretraining & task
    with pytest.raises(ValueError, match="names per population"):
        synthetic.make_entities(0, 5000, 4, synthetic.TASK)
    assert len(synthetic.make_entities(0, 5000, 4, synthetic.TASK, distinct=False)) == 5000


def test_implications_follow_the_general_knowledge():
    entity = synthetic.make_entities(5, 1, 5, synthetic.TASK)[0]
    knowledge = set(synthetic.general_knowledge())
    for (attribute, value), line in zip(entity.facts, synthetic.implied_facts(entity), strict=True):
        implied = synthetic.implied(attribute, value)
        assert implied in line and attribute.general.format(value=value, implied=implied) in knowledge
    assert synthetic.century("1701") == "18th century" and synthetic.century("1999") == "20th century"


@pytest.mark.parametrize("name", ["squad_val.json", "iter0_train.json", "base_val.json", "gpt4_1_val.json",
                                  "iter2_val.json", "naive_val.json"])
def test_seal_reference_files_parse_into_jobs(task, name):
    path = shared_file(f"knowledge/{name}")
    contexts = load_file(str(path))
    records = json.loads(path.read_text())
    assert len(contexts) == len(records) and all(c.questions for c in contexts)
    ctx, rec = contexts[0], records[0]
    self_edit = rec["completions"][0] if "completions" in rec else ""
    job = task.make_job("j", ctx, self_edit, policy_version=0, seed=1)
    assert job.examples[-1].completion == f"{ctx.title}\n{ctx.text}"
    assert all(ex.completion.startswith(ctx.title + "\n") for ex in job.examples)
    assert len(job.eval_prompts) == len(rec["questions"])


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"title": "x"}', "expected a JSON list"),
    ('[{"title": "t", "context": "c"}]', "record 0: field 'questions'"),
    ('[{"title": "t", "context": 3, "questions": []}]', "record 0: field 'context' must be a string"),
    ('[{"title": "t", "context": "c", "questions": [{"question": "q"}]}]', r"questions\[0\] must have"),
])
def test_malformed_data_file_is_named_in_the_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_file(str(path))
    assert str(path) in str(err.value)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_file(str(tmp_path / "absent.json"))
