"""Both tasks behind one interface, and the ARC task's updates, rewards, data and grid world (no model)."""

import json

import pytest

from seal_dist.config import UserError
from seal_dist.tasks.arc import fewshot, world
from omegaconf import OmegaConf

from seal_dist.tasks.arc.augment import ROTATE_90
from seal_dist.tasks.arc.grids import format_grid, parse_grid
from seal_dist.tasks.arc.selfedit import SelfEdit, to_json
from seal_dist.tasks.interface import Condition, create
from tests.conftest import compose_config

PRESETS = {"knowledge": ["task=synthetic"], "arc-grid": ["task=arc_grid"],
           "arc-files": ["task=arc", "task.augmentation.max_tokens=2048"]}


def words(text: str, add_special_tokens: bool = False) -> dict:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return {"input_ids": text.split()}


def make_task(*overrides: str):
    task = create(compose_config("run_dir=x", *overrides))
    task.use_tokenizer(words)
    return task


def edit(**changes) -> str:
    fields = {"basic": True, "size": False, "chain": False, "repeat": False, "loss_on_all_tokens": False,
              "learning_rate": 1e-3, "epochs": 2, **changes}
    return to_json(SelfEdit(**fields))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_task_satisfies_the_interface(preset):
    task = make_task(*PRESETS[preset])
    train, heldout = task.load("train"), task.load("heldout")
    ids = [c.id for c in train + heldout]
    assert train and heldout and len(set(ids)) == len(ids)
    ctx = heldout[0]
    assert isinstance(task.prompt(ctx), str) and task.prompt(ctx) != task.prompt(heldout[1])
    baseline = task.make_job("b", ctx, None, 0, seed=1)
    assert baseline.examples == () and baseline.eval_prompts and task.describe(ctx, None) == {}
    self_edit = train[0].text if preset == "knowledge" else edit(epochs=1)  # within every preset's cost guard
    assert task.parse_failure(self_edit) is None
    job = task.make_job("j", ctx, self_edit, 3, seed=1)
    assert job.examples and job.policy_version == 3 and job.eval_prompts == baseline.eval_prompts
    assert task.score(ctx, ("",) * len(job.eval_prompts)) == 0.0
    assert task.items(ctx) >= 1 and all(isinstance(v, float) for v in task.describe(ctx, self_edit).values())
    before, after = task.conditions(heldout[:2], compose_config("run_dir=x").eval)
    assert all(isinstance(c, Condition) and set(c.edits) == {heldout[0].id, heldout[1].id} for c in before + after)
    json.dumps(task.pretraining_spec())


def perfect_answers(ctx) -> tuple[str, ...]:
    """What a model that solved the task answers: each query's solution under the query's transform."""
    return tuple(format_grid(q.transform.forward(solution)) for test, solution in zip(ctx.tests, ctx.solutions)
                 for q in fewshot.queries(ctx.demos, test))


def test_reward_is_one_iff_every_test_input_is_solved():
    task = make_task(*PRESETS["arc-files"])
    two_tests = next(c for c in task.load("train") if len(c.tests) == 2)
    answers = perfect_answers(two_tests)
    assert task.score(two_tests, answers) == 1.0
    first = len(fewshot.queries(two_tests.demos, two_tests.tests[0]))
    assert task.score(two_tests, answers[:first] + ("x",) * (len(answers) - first)) == 0.0  # the second unsolved
    assert task.score(two_tests, ("not a grid",) * len(answers)) == 0.0


def test_self_edit_settings_are_clamped_and_a_bad_one_trains_nothing():
    task = make_task("task=arc_grid", "task.lr_bounds=[1e-4,1e-2]", "task.epoch_bounds=[1,3]", "task.max_steps=1000")
    ctx = task.load("train")[0]
    job = task.make_job("j", ctx, edit(learning_rate=5.0, epochs=50), 0, seed=0)
    assert (job.lr, job.epochs) == (1e-2, 3) and job.loss_on_prompt is False
    assert task.make_job("j", ctx, edit(learning_rate=1e-9, epochs=0, loss_on_all_tokens=True), 0, 0).schedule(0, 0)[0] == 1e-4
    assert task.make_job("j", ctx, edit(loss_on_all_tokens=True), 0, 0).loss_on_prompt is True
    for bad in ("no json here", edit().replace("train_using_output_tokens", "train_twice")):
        job = task.make_job("j", ctx, bad, 0, seed=0)
        assert job.examples == () and job.epochs == 0 and task.describe(ctx, bad) == {"parsed": 0.0, "trained": 0.0}
    assert "training.strategy" in task.parse_failure(edit().replace("train_using_output_tokens", "train_twice"))


def test_cost_guard_skips_updates_of_too_many_steps():
    # arc_grid: at most 48 examples; batch 1 (inner's default), so epochs x examples steps
    task = make_task("task=arc_grid", "task.max_steps=100")
    ctx = task.load("train")[0]
    size = len(task.make_job("j", ctx, edit(epochs=1), 0, seed=0).examples)
    allowed, guarded = 100 // size, 100 // size + 1
    assert task.make_job("j", ctx, edit(epochs=allowed), 0, seed=0).epochs == allowed
    job = task.make_job("j", ctx, edit(epochs=guarded), 0, seed=0)
    assert job.examples == () and job.epochs == 0
    assert task.update(ctx, edit(epochs=guarded), 0).reason.startswith("cost guard")
    assert task.describe(ctx, edit(epochs=guarded))["trained"] == 0.0 and task.describe(ctx, edit())["trained"] == 1.0


def test_augmentations_change_the_training_set_and_its_loss_mask():
    task = make_task("task=arc_grid", "task.augmentation.max_examples=1000", "task.max_steps=100000",
                     "task.augmentation.order_permutations=0")
    ctx = task.load("train")[0]
    plain = task.make_job("j", ctx, edit(basic=False), 0, seed=0)
    basic = task.make_job("j", ctx, edit(basic=True), 0, seed=0).examples
    assert len(plain.examples) == 5 + 20  # 5 demonstrations: 5 leave-one-out and 20 leave-two-out problems
    assert len(basic) > 5 * len(plain.examples) and set(plain.examples) <= set(basic)
    assert all(ex.completion == format_grid(parse_grid(ex.completion)) for ex in basic)  # the loss: the output grid
    assert not plain.loss_on_prompt and task.make_job("j", ctx, edit(loss_on_all_tokens=True), 0, 0).loss_on_prompt


def test_oracle_is_the_configured_grid_scored_by_its_best():
    task = make_task("task=arc_grid")
    contexts = task.load("heldout")[:3]
    before, after = task.conditions(contexts, compose_config("run_dir=x").eval)
    assert [c.name for c in before] == ["in-context (no TTT)"] and not before[0].best_of
    (oracle,) = after
    assert oracle.best_of and len(oracle.edits[contexts[0].id]) == 2  # 2 augmentation sets x 1 learning rate x 1 epochs
    assert all(task.parse_failure(e) is None for e in oracle.edits[contexts[0].id])


def test_bad_settings_and_files_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="exceeds inner.max_seq_len"):
        create(compose_config("run_dir=x", "task=arc"))  # 8192-token problems, 2048-token updates
    with pytest.raises(UserError, match="task.oracle.augmentations: unknown families"):
        create(compose_config("run_dir=x", "task=arc_grid", "task.oracle.augmentations=[[basic,spin]]"))
    with pytest.raises(UserError, match="no task nope"):
        make_task("task=arc", "task.augmentation.max_tokens=2048", "task.train.tasks=[nope]").load("train")
    challenges, solutions = tmp_path / "c.json", tmp_path / "s.json"
    challenges.write_text(json.dumps({"abc": {"train": [{"input": [[1]], "output": [[1, 2], [3]]}], "test": [{"input": [[1]]}]}}))
    solutions.write_text(json.dumps({"abc": [[[1]]]}))
    task = make_task(*PRESETS["arc-files"], f"task.heldout.challenges={challenges}", f"task.heldout.solutions={solutions}")
    with pytest.raises(UserError, match=r"abc.*train\[0\]\.output"):
        task.load("heldout")


def test_grid_world_tasks_are_seeded_determined_and_recolourings_survive_rotation():
    cfg = compose_config("run_dir=x", "task=arc_grid").task.world
    train, heldout = world.make_split(cfg, "train"), world.make_split(cfg, "heldout")
    assert train == world.make_split(cfg, "train") and not {t.id for t in train} & {t.id for t in heldout}
    assert [t.demos for t in heldout[:5]] != [t.demos for t in world.make_split(OmegaConf.merge(cfg, {"seed": 1001}), "heldout")[:5]]
    for t in train[:50]:
        shown = {c for i, _ in t.demos for row in i for c in row}
        assert {c for row in t.tests[0] for c in row} <= shown  # the test input's colours are demonstrated
        # a rotated recolouring task is the same recolouring: the rotated test maps to the rotated solution
        rotated = {ROTATE_90.forward(i): ROTATE_90.forward(o) for i, o in t.demos}
        assert all(world_map_agrees(rotated, t))


def world_map_agrees(rotated_demos: dict, task) -> list[bool]:
    """Each rotated demonstration's output is its input under the task's colour map (read off the task)."""
    table = {a: b for i, o in task.demos for ri, ro in zip(i, o) for a, b in zip(ri, ro)}
    return [tuple(tuple(table[c] for c in row) for row in i) == o for i, o in rotated_demos.items()]


def test_pretraining_corpus_has_solved_problems_and_random_configurations():
    task = make_task("task=arc_grid", "task.pretraining.world.num_train=20", "task.pretraining.self_edits=40")
    corpus = task.pretraining_corpus(seed=0)
    configs = [ex for ex in corpus if ex.prompt]
    assert len(configs) == 40 and len(corpus) == 40 + 20 * (1 + 5)  # per task: the task and its 5 leave-one-outs
    assert all(task.parse_failure(ex.completion) is None for ex in configs)
    assert len({ex.completion for ex in configs}) > 20  # configurations vary
    assert corpus == task.pretraining_corpus(seed=0) and corpus != task.pretraining_corpus(seed=1)
