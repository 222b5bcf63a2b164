"""The ARC domain's pure parts: grids, augmentations, few-shot problems, voting, self-edits and data files."""

import json
import random

import pytest

from seal_dist.tasks.arc import augment, data, fewshot, selfedit, vote
from seal_dist.tasks.arc.grids import MAX_SIDE, GridError, as_grid, format_grid, parse_grid
from tests.conftest import shared_file

ALL_TRANSFORMS = [t for family in augment.FAMILIES.values() for t in family]


def random_grid(rng: random.Random, height: int, width: int) -> tuple:
    return tuple(tuple(rng.randrange(10) for _ in range(width)) for _ in range(height))


def distinct_grid(height: int, width: int) -> tuple:
    """A grid whose cells all differ (values beyond colours are fine for geometry)."""
    return tuple(tuple(r * width + c for c in range(width)) for r in range(height))


def shape(g: tuple) -> tuple[int, int]:
    return len(g), len(g[0])


# --- augmentations ---

SHAPES = {  # name -> the shape of forward(g) for an h x w grid
    "rotate_90": lambda h, w: (w, h), "rotate_180": lambda h, w: (h, w), "rotate_270": lambda h, w: (w, h),
    "flip_0": lambda h, w: (h, w), "flip_1": lambda h, w: (h, w), "transpose": lambda h, w: (w, h),
    "reflect_0_after": lambda h, w: (2 * h, w), "reflect_0_before": lambda h, w: (2 * h, w),
    "reflect_1_after": lambda h, w: (h, 2 * w), "reflect_1_before": lambda h, w: (h, 2 * w),
    "translate_1_1": lambda h, w: (h, w),
    "resolution_x2": lambda h, w: (2 * h, 2 * w), "height_x2": lambda h, w: (2 * h, w),
    "width_x2": lambda h, w: (h, 2 * w),
    "rotate_90+resolution_x2": lambda h, w: (2 * w, 2 * h), "rotate_180+resolution_x2": lambda h, w: (2 * h, 2 * w),
    "rotate_270+resolution_x2": lambda h, w: (2 * w, 2 * h), "flip_0+resolution_x2": lambda h, w: (2 * h, 2 * w),
    "flip_1+resolution_x2": lambda h, w: (2 * h, 2 * w), "transpose+resolution_x2": lambda h, w: (2 * w, 2 * h),
    "repeat_0": lambda h, w: (2 * h, w), "repeat_1": lambda h, w: (h, 2 * w), "repeat_both": lambda h, w: (2 * h, 2 * w),
}


def test_families_hold_the_reference_transforms():
    assert {k: len(v) for k, v in augment.FAMILIES.items()} == {"basic": 11, "size": 3, "chain": 6, "repeat": 3}
    assert sorted(t.name for t in ALL_TRANSFORMS) == sorted(SHAPES)
    assert [t.name for t in augment.INFERENCE] == ["transpose", "flip_0", "flip_1", "rotate_90", "rotate_180"]


@pytest.mark.parametrize("t", ALL_TRANSFORMS + [augment.IDENTITY], ids=lambda t: t.name)
def test_every_transform_is_undone_by_its_inverse_and_changes_shape_as_specified(t):
    rng = random.Random(t.name)
    for _ in range(30):
        h, w = rng.randint(1, 9), rng.randint(1, 9)
        g = random_grid(rng, h, w)
        out = t.forward(g)
        assert shape(out) == (SHAPES[t.name](h, w) if t is not augment.IDENTITY else (h, w))
        assert all(isinstance(row, tuple) for row in out)
        assert t.inverse(out) == g
    if t is not augment.IDENTITY:
        assert t.forward(distinct_grid(2, 3)) != distinct_grid(2, 3)


def test_known_small_examples():
    g = ((1, 2), (3, 4))
    expected = {"rotate_90": ((3, 1), (4, 2)), "rotate_180": ((4, 3), (2, 1)), "rotate_270": ((2, 4), (1, 3)),
                "flip_0": ((3, 4), (1, 2)), "flip_1": ((2, 1), (4, 3)), "transpose": ((1, 3), (2, 4)),
                "translate_1_1": ((4, 3), (2, 1)), "reflect_0_after": ((1, 2), (3, 4), (3, 4), (1, 2)),
                "reflect_1_before": ((2, 1, 1, 2), (4, 3, 3, 4)), "repeat_1": ((1, 2, 1, 2), (3, 4, 3, 4)),
                "height_x2": ((1, 2), (1, 2), (3, 4), (3, 4)), "width_x2": ((1, 1, 2, 2), (3, 3, 4, 4))}
    by_name = {t.name: t for t in ALL_TRANSFORMS}
    for name, out in expected.items():
        assert by_name[name].forward(g) == out, name
    assert augment.ROTATE_90.forward(((1, 2, 3),)) == ((1,), (2,), (3,))  # a row turned clockwise


def test_cell_placement_of_size_translate_and_tile():
    g = distinct_grid(3, 4)
    up = augment.RESOLUTION.forward(g)
    assert all(up[2 * r + a][2 * c + b] == g[r][c] for r in range(3) for c in range(4) for a in (0, 1) for b in (0, 1))
    moved = augment.TRANSLATE.forward(g)
    assert all(moved[(r + 1) % 3][(c + 1) % 4] == g[r][c] for r in range(3) for c in range(4))
    tiled = augment.REPEATS[2].forward(g)
    assert all(tiled[r + 3 * a][c + 4 * b] == g[r][c] for r in range(3) for c in range(4) for a in (0, 1) for b in (0, 1))


def test_a_chain_is_undone_in_reverse_order():
    g = random_grid(random.Random(1), 4, 6)
    by_name = {t.name: t for t in ALL_TRANSFORMS}
    for chain in augment.FAMILIES["chain"]:
        first = by_name[chain.name.removesuffix("+resolution_x2")]
        assert chain.forward(g) == augment.RESOLUTION.forward(first.forward(g))
        assert chain.inverse(g) == first.inverse(augment.RESOLUTION.inverse(g))  # not a block grid: order shows


def test_rotating_four_quarter_turns_is_the_identity():
    g = random_grid(random.Random(0), 3, 5)
    turned = g
    for _ in range(4):
        turned = augment.ROTATE_90.forward(turned)
    assert turned == g
    assert augment.ROTATE_90.forward(augment.ROTATE_270.forward(g)) == g


def test_an_inverse_refuses_a_shape_its_transform_cannot_make():
    with pytest.raises(augment.ShapeError):
        augment.RESOLUTION.inverse(random_grid(random.Random(0), 3, 4))
    with pytest.raises(augment.ShapeError):
        augment.REPEATS[1].inverse(random_grid(random.Random(0), 2, 3))


# --- grids ---

def test_format_and_parse_round_trip():
    g = ((0, 1, 2), (3, 4, 5))
    assert format_grid(g) == "0 1 2\n3 4 5"
    assert parse_grid(format_grid(g)) == g
    assert parse_grid("\n\n0 1 2\n3 4 5\n\nThe pattern is a shift.") == g
    assert parse_grid("0 1 2\n3 4 5\nThat is all.") == g
    assert parse_grid("0  1\t2\n3 4 5") == g


@pytest.mark.parametrize("text", [
    "", "\n\n", "1 2\n3", "1 a\n2 3", "1 2\n3 a", "answer:\n1 2", "1 12\n3 4", "12", "1 2\n3 -4",
    "\n".join(["1"] * (MAX_SIDE + 1)), " ".join(["1"] * (MAX_SIDE + 1)),
])
def test_parse_grid_rejects_malformed_answers(text):
    assert parse_grid(text) is None


def test_as_grid_names_the_problem():
    assert as_grid([[1, 2], [3, 4]], "here") == ((1, 2), (3, 4))
    for obj, words in [([], "non-empty"), ([[1, 2], [3]], "row 1 has 1 cells, row 0 has 2"),
                       ([[1, True]], "cell 1"), ([[1, 10]], "cell 1"), ([[0] * 31], "31 columns"),
                       ([[0]] * 31, "31 rows"), ("12", "non-empty list"), ([[1.0]], "cell 0")]:
        with pytest.raises(GridError, match=f"^here: .*{words}"):
            as_grid(obj, "here")


# --- few-shot problems ---

def demos_of(count: int, side: int = 2) -> tuple:
    rng = random.Random(count)
    return tuple((random_grid(rng, side, side), random_grid(rng, side, side)) for _ in range(count))


@pytest.mark.parametrize("d, one, two", [(4, 4, 12), (3, 3, 6), (2, 2, 0), (1, 0, 0)])
def test_leave_n_out_counts(d, one, two):
    demos = demos_of(d)
    assert len(fewshot.leave_n_out(demos, 1)) == one
    assert len(fewshot.leave_n_out(demos, 2)) == two
    for problem, target in fewshot.leave_n_out(demos, 2):
        assert len(problem.demos) == d - 2 and (problem.query, target) in demos
        assert (problem.query, target) not in problem.demos


def test_leave_one_out_keeps_the_order_of_the_rest():
    demos = demos_of(3)
    problem, target = fewshot.leave_n_out(demos, 1)[1]
    assert problem == fewshot.Problem((demos[0], demos[2]), demos[1][0]) and target == demos[1][1]


def test_prompt_shows_demonstrations_then_the_query():
    problem = fewshot.Problem(((((1,),), ((2,),)),), ((3,),))
    assert fewshot.prompt(problem) == "input:\n1\noutput:\n2\n\ninput:\n3\noutput:\n"


def build(demos, families=("basic", "size", "chain", "repeat"), seed=0, **overrides):
    settings = dict(max_side=MAX_SIDE, max_tokens=10**6, count_tokens=len, max_examples=10**6,
                    colour_permutations=1, order_permutations=1) | overrides
    return fewshot.training_set(demos, families, random.Random(seed), **settings)


def test_training_set_is_deterministic_and_without_duplicates():
    demos = demos_of(4)
    first = build(demos)
    assert first == build(demos) and first != build(demos, seed=1)
    assert len(first) == len(set(first)) > len(build(demos, families=()))
    assert all(prompt.endswith("output:\n") and parse_grid(completion) for prompt, completion in first)


def test_training_set_caps_and_drops():
    demos = demos_of(4, side=8)
    assert len(build(demos, max_examples=7)) == 7
    plain = dict(colour_permutations=0, order_permutations=0)
    assert len(build(demos, **plain)) == 16 * (1 + 23)  # 4 + 12 problems, as they are and under 23 transforms
    # doubled grids (16 a side) exceed 10: only the problems as they are and under the 7 same-size transforms stay
    small = build(demos, max_side=10, **plain)
    assert len(small) == 16 * 8 and all(len(parse_grid(c)) <= 10 for _, c in small)
    assert build(demos, max_side=7) == []
    shortest = min(len(p) + len(c) for p, c in build(demos, families=()))
    kept = build(demos, families=(), max_tokens=shortest, **plain)
    assert 0 < len(kept) < 16 and all(len(p) + len(c) <= shortest for p, c in kept)


def test_colour_permutations_keep_the_background():
    demos = ((((0, 1), (2, 0)), ((0, 3), (4, 0))),) * 1 + ((((0, 5), (6, 0)), ((0, 7), (8, 0))),)
    examples = build(demos, families=(), colour_permutations=20, order_permutations=0)
    assert len(examples) > 2
    for prompt, completion in examples:
        grid = parse_grid(completion)
        assert grid[0][0] == grid[1][1] == 0 and 0 not in (grid[0][1], grid[1][0])


def test_queries_are_the_leave_one_out_sets_in_two_orders_and_five_transforms():
    demos, test_input = demos_of(3), ((1, 2, 3),)
    qs = fewshot.queries(demos, test_input)
    identity = [q for q in qs if q.group == "identity"]
    assert len(identity) == 6 and all(len(q.problem.demos) == 2 for q in identity)
    assert [q.group for q in qs[6:]] == [t.name for t in augment.INFERENCE]
    assert qs[6].problem.query == ((1,), (2,), (3,))  # transposed
    assert len(fewshot.queries(demos_of(1), test_input)) == 1 + 5


def test_attempts_map_transformed_answers_back():
    demos, test_input = demos_of(3), ((1, 2, 3), (4, 5, 6))
    solution = ((6, 5, 4), (3, 2, 1))
    qs = fewshot.queries(demos, test_input)
    answers = [format_grid(q.transform.forward(solution)) + "\n\ndone" for q in qs]
    answers[0] = "no idea"
    assert fewshot.attempts(qs, answers)[0] == solution
    # a wrong answer everywhere but under the transforms: the mapped-back answers still win attempt 1
    wrong = format_grid(((0, 0, 0),))
    mixed = [wrong if q.group == "identity" else format_grid(q.transform.forward(solution)) for q in qs]
    assert fewshot.attempts(qs, mixed)[0] == solution
    assert fewshot.attempts(qs, ["x"] * len(qs)) == (((0,),), ((0,),))


def test_an_answer_the_inverse_cannot_undo_is_dropped():
    q = fewshot.Query("resolution_x2", augment.RESOLUTION, fewshot.Problem((), ((1,),)))
    assert fewshot.attempts([q, q], ["1 2 3", "1 1\n1 1"]) == (((1,),), ((1,),))


# --- voting ---

A, B, C = ((1,),), ((2,),), ((3, 3),)


def test_vote_majority_first_runner_up_second():
    assert vote.vote([("identity", g) for g in (B, A, C, A, B, A)]) == (A, B)
    spread = [("identity", A), ("identity", A), ("transpose", A), ("transpose", B), ("flip_0", B), ("rotate_90", C)]
    assert vote.vote(spread) == (A, B)


def test_a_group_of_one_distinct_answer_nominates_it_three_times():
    # the reference's row- and column-majority fall-backs: A's lone group outweighs C's two nominations
    answers = [("rotate_90", A), ("flip_0", B), ("flip_0", B), ("flip_0", C), ("flip_1", B), ("flip_1", C),
               ("flip_1", ((4,),))]
    assert vote.vote(answers) == (B, A)


def test_vote_edge_cases():
    assert vote.vote([]) == (((0,),), ((0,),))
    assert vote.vote([("identity", A)]) == (A, A)
    assert vote.vote([("identity", A), ("identity", B)]) == (A, B)  # a tie goes to the first given
    # nominations outweigh raw counts: three groups each answer B once, A is answered 4 times in one group
    assert vote.vote([("identity", A)] * 4 + [(g, B) for g in ("flip_0", "flip_1", "transpose")]) == (B, A)


# --- self-edits ---

EDIT = selfedit.SelfEdit(basic=True, size=False, chain=True, repeat=False, loss_on_all_tokens=False,
                         learning_rate=1e-4, epochs=2)


def test_self_edit_round_trips_and_tolerates_chatter():
    text = selfedit.to_json(EDIT)
    assert selfedit.parse_self_edit(text) == EDIT
    assert selfedit.parse_self_edit(f"Here it is: {text} Hope it helps {{") == EDIT
    assert EDIT.families() == ("basic", "chain")
    obj = json.loads(text)
    obj["training"]["learning_rate"] = 1
    obj["extra"] = "ignored"
    assert selfedit.parse_self_edit(json.dumps(obj)).learning_rate == 1.0


def edited(path: str, value) -> str:
    obj = json.loads(selfedit.to_json(EDIT))
    section, key = path.split(".")
    if value is KeyError:
        del obj[section][key]
    else:
        obj[section][key] = value
    return json.dumps(obj)


@pytest.mark.parametrize("text, field, words", [
    ("I would use basic augmentations.", "(text)", "no JSON"),
    ('{"data_generation": {"use_basic_augmentations": tru', "(text)", "not valid JSON"),
    (edited("training.num_train_epochs", KeyError), "training.num_train_epochs", "missing key"),
    (edited("data_generation.use_size_augmentations", KeyError), "data_generation.use_size_augmentations",
     "missing key"),
    ('{"training": {}}', "data_generation", "missing key 'data_generation'"),
    (edited("data_generation.use_chain_augmentations", "yes"), "data_generation.use_chain_augmentations",
     "got string"),
    (edited("training.learning_rate", True), "training.learning_rate", "got boolean"),
    (edited("training.learning_rate", "1e-4"), "training.learning_rate", "got string"),
    (edited("training.num_train_epochs", 2.5), "training.num_train_epochs", "got number"),
    (edited("training.strategy", "train_hard"), "training.strategy", "'train_hard'"),
    (edited("training.learning_rate", 0), "training.learning_rate", "above 0"),
    (edited("training.learning_rate", float("inf")), "training.learning_rate", "finite"),
    (edited("training.num_train_epochs", -1), "training.num_train_epochs", "at least 0"),
    ('{"data_generation": [], "training": {}}', "data_generation", "got array"),
])
def test_self_edit_failures_name_the_field(text, field, words):
    failure = selfedit.parse_self_edit(text)
    assert isinstance(failure, selfedit.ParseFailure)
    assert failure.field == field and words in failure.reason


# --- data files ---

def write(tmp_path, name: str, obj) -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


TASK = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}, {"input": [[2, 0]], "output": [[0, 2]]}],
        "test": [{"input": [[3, 0]]}]}


def test_load_reads_tasks_sorted_with_solutions(tmp_path):
    challenges = write(tmp_path, "c.json", {"b2": TASK, "a1": TASK})
    solutions = write(tmp_path, "s.json", {"a1": [[[0, 3]]], "b2": [[[0, 3]]], "zz": [[[1]]]})
    problems = data.load(challenges, solutions)
    assert [p.id for p in problems] == ["a1", "b2"]
    assert problems[0].demos[1] == (((2, 0),), ((0, 2),)) and problems[0].tests == (((3, 0),),)
    assert problems[0].solutions == (((0, 3),),)
    assert data.load(challenges, None)[0].solutions is None


def bad_task(**changes):
    return {"6150a2bd": dict(TASK, **changes)}


@pytest.mark.parametrize("challenges, solutions, words", [
    (bad_task(train=[TASK["train"][0], {"input": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]], "output": [[1]]}]), None,
     "c.json: task 6150a2bd: train[1].input: row 2 has 3 cells, row 0 has 4"),
    (bad_task(train=[{"input": [[1]]}]), None, "c.json: task 6150a2bd: train[0]: missing key 'output'"),
    (bad_task(test=[]), None, "c.json: task 6150a2bd: test: expected a non-empty list"),
    (bad_task(test=[{"input": [[1, "2"]]}]), None, "c.json: task 6150a2bd: test[0].input: row 0, cell 1"),
    ({"6150a2bd": TASK}, {}, "s.json: task 6150a2bd: missing"),
    ({"6150a2bd": TASK}, {"6150a2bd": [[[1]], [[2]]]}, "s.json: task 6150a2bd: 2 solution grids for 1 test"),
    ({"6150a2bd": TASK}, {"6150a2bd": [[[11]]]}, "s.json: task 6150a2bd[0]: row 0, cell 0"),
    ([TASK], None, "c.json: expected an object of tasks"),
    ("{not json", None, "c.json: not valid JSON"),
])
def test_a_malformed_arc_file_is_named_with_task_and_field(tmp_path, challenges, solutions, words):
    c = write(tmp_path, "c.json", challenges)
    s = None if solutions is None else write(tmp_path, "s.json", solutions)
    with pytest.raises(data.ArcDataError) as raised:
        data.load(c, s)
    assert str(raised.value).startswith(f"{tmp_path}/{words}")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(data.ArcDataError, match="nowhere.json: no such"):
        data.load(str(tmp_path / "nowhere.json"), None)


def test_parse_in_memory_names_the_source():
    with pytest.raises(data.ArcDataError, match="^world: task t: train: expected"):
        data.parse({"t": dict(TASK, train={})}, None, "world")
    assert data.parse({"t": TASK}, {"t": [[[0, 3]]]}, "world")[0].solutions == (((0, 3),),)


@pytest.mark.parametrize("split, subset, count", [("training", "training_set", 12), ("evaluation", "eval_set", 10)])
def test_the_shared_1b_filtered_tasks_load(split, subset, count):
    problems = data.load(str(shared_file(f"arc/arc-agi_{split}_challenges_filtered_1B_{subset}.json")),
                         str(shared_file(f"arc/arc-agi_{split}_solutions_filtered_1B_{subset}.json")))
    assert len(problems) == count
    assert all(p.demos and len(p.solutions) == len(p.tests) for p in problems)
    problem = problems[0]
    examples = fewshot.training_set(problem.demos, ("basic",), random.Random(0), MAX_SIDE, 8192, len, 250, 1, 1)
    assert 0 < len(examples) <= 250
