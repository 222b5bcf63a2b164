"""ARC tasks from ARC-AGI JSON: a challenges file of demonstrations and test inputs, and a solutions file."""

from dataclasses import dataclass

from seal_dist.config import UserError
from seal_dist.tasks.arc.grids import Grid, GridError, Pair, as_grid
from seal_dist.tasks.files import read_json


class ArcDataError(UserError):
    """An ARC file that is missing or does not follow the ARC-AGI schema; the message names the file, the task
    and the field."""


@dataclass(frozen=True)
class ArcProblem:
    id: str
    demos: tuple[Pair, ...]
    tests: tuple[Grid, ...]  # the test inputs
    solutions: tuple[Grid, ...] | None  # one a test input, where known


def load(challenges_path: str, solutions_path: str | None) -> list[ArcProblem]:
    """The tasks of a challenges file, with their solutions where a solutions file is given; sorted by id."""
    solutions = None if solutions_path is None else _solutions(_read(solutions_path), solutions_path)
    return _joined(_challenges(_read(challenges_path), challenges_path), solutions, solutions_path)


def parse(challenges: object, solutions: object | None, source: str) -> list[ArcProblem]:
    """As load, for data in memory; source names it in errors."""
    return _joined(_challenges(challenges, source), None if solutions is None else _solutions(solutions, source),
                   source)


def _read(path: str) -> object:
    return read_json(path, ArcDataError, "ARC")


def _grid(obj: object, where: str) -> Grid:
    try:
        return as_grid(obj, where)
    except GridError as e:
        raise ArcDataError(str(e)) from None


def _grid_at(obj: object, key: str, where: str) -> Grid:
    return _grid(_field(obj, key, where), f"{where}.{key}")


def _demo(obj: object, where: str) -> Pair:
    return _grid_at(obj, "input", where), _grid_at(obj, "output", where)


def _listed(obj: object, where: str, what: str) -> list:
    if not isinstance(obj, list) or not obj:
        got = "an empty list" if obj == [] else type(obj).__name__
        raise ArcDataError(f"{where}: expected a non-empty list of {what}, got {got}")
    return obj


def _field(obj: object, key: str, where: str) -> object:
    if not isinstance(obj, dict):
        raise ArcDataError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise ArcDataError(f"{where}: missing key '{key}'")
    return obj[key]


def _tasks(obj: object, source: str) -> dict:
    if not isinstance(obj, dict):
        raise ArcDataError(f"{source}: expected an object of tasks by id, got {type(obj).__name__}")
    return obj


def _challenges(obj: object, source: str) -> dict[str, tuple[tuple[Pair, ...], tuple[Grid, ...]]]:
    """Each task's (demonstrations, test inputs)."""
    tasks = {}
    for task_id, task in _tasks(obj, source).items():
        where = f"{source}: task {task_id}"
        train = _listed(_field(task, "train", where), f"{where}: train", "demonstrations")
        test = _listed(_field(task, "test", where), f"{where}: test", "test inputs")
        demos = tuple(_demo(pair, f"{where}: train[{k}]") for k, pair in enumerate(train))
        inputs = tuple(_grid_at(t, "input", f"{where}: test[{k}]") for k, t in enumerate(test))
        tasks[task_id] = demos, inputs
    return tasks


def _solutions(obj: object, source: str) -> dict[str, tuple[Grid, ...]]:
    """Each task's solution grids."""
    solutions = {}
    for task_id, grids in _tasks(obj, source).items():
        where = f"{source}: task {task_id}"
        solutions[task_id] = tuple(_grid(g, f"{where}[{k}]") for k, g in enumerate(_listed(grids, where, "grids")))
    return solutions


def _joined(tasks: dict, solutions: dict | None, solutions_source: str | None) -> list[ArcProblem]:
    """The problems sorted by id; every task needs one solution a test input where solutions are given (tasks
    only the solutions have are ignored)."""
    problems = []
    for task_id in sorted(tasks):
        demos, inputs = tasks[task_id]
        solved = None
        if solutions is not None:
            if task_id not in solutions:
                raise ArcDataError(f"{solutions_source}: task {task_id}: missing (the challenges have it)")
            solved = solutions[task_id]
            if len(solved) != len(inputs):
                raise ArcDataError(f"{solutions_source}: task {task_id}: {len(solved)} solution grids for "
                                   f"{len(inputs)} test inputs")
        problems.append(ArcProblem(task_id, demos, inputs, solved))
    return problems
