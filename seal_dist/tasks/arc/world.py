"""A seeded synthetic grid world for ARC on a CPU: small grids of a few colours on a background 0, and tasks
that each apply one transformation of a family to every input.

The families are chosen so that how a task is trained decides whether test-time training solves it. A
recolouring (each colour mapped to another, the same map for the whole task) is unchanged by rotating or
flipping the task, so the basic augmentations multiply its training data; a geometric family is not (a
rotated flip is another flip), so for it they mix in other tasks. And since a task's map is new to the
model, in-context learning rarely finds it, while a few dozen steps of a well-set update do.
"""

import random
from collections.abc import Callable

from seal_dist.config import GridWorldConfig, UserError
from seal_dist.tasks.arc import augment
from seal_dist.tasks.arc.data import ArcProblem
from seal_dist.tasks.arc.grids import Grid

Map = Callable[[Grid], Grid]


def _recolouring(rng: random.Random, colours: list[int]) -> Map:
    """A random derangement of the task's colours (no colour keeps its own), the background kept."""
    while True:
        image = rng.sample(colours, len(colours))
        if all(a != b for a, b in zip(colours, image)) or len(colours) < 2:
            break
    table = {0: 0, **dict(zip(colours, image))}
    return lambda g: tuple(tuple(table[c] for c in row) for row in g)


def _fixed(transform: augment.Transform) -> Callable[[random.Random, list[int]], Map]:
    return lambda rng, colours: transform.forward


def _recolour_then(transform: augment.Transform) -> Callable[[random.Random, list[int]], Map]:
    def make(rng: random.Random, colours: list[int]) -> Map:
        recolour = _recolouring(rng, colours)
        return lambda g: transform.forward(recolour(g))
    return make


# family name -> a task's transformation, drawn for the task from its colours
FAMILIES: dict[str, Callable[[random.Random, list[int]], Map]] = {
    "recolour": _recolouring,
    "flip": _fixed(augment.FLIP_0),
    "mirror": _fixed(augment.FLIP_1),
    "rotate": _fixed(augment.ROTATE_180),
    "transpose": _fixed(augment.TRANSPOSE),
    "recolour_flip": _recolour_then(augment.FLIP_0),
}


def families_named(names: list[str], setting: str) -> list[str]:
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise UserError(f"{setting} must be a non-empty subset of {list(FAMILIES)}, got {list(names)}")
    return list(names)


def _grid(rng: random.Random, side: list[int], colours: list[int]) -> Grid:
    h, w = rng.randint(*side), rng.randint(*side)
    return tuple(tuple(rng.choice([0, *colours]) for _ in range(w)) for _ in range(h))


def make_task(rng: random.Random, task_id: str, family: str, cfg: GridWorldConfig) -> ArcProblem:
    """A task of the family: cfg.demos demonstrations and one test input, every colour of the test input shown
    in a demonstration (so the task is determined by its demonstrations)."""
    colours = rng.sample(range(1, 10), cfg.colours)
    transform = FAMILIES[family](rng, colours)
    while True:
        inputs = [_grid(rng, list(cfg.side), colours) for _ in range(cfg.demos + 1)]
        shown = {c for g in inputs[:-1] for row in g for c in row}
        if set(colours) <= shown:
            break
    demos = tuple((g, transform(g)) for g in inputs[:-1])
    return ArcProblem(task_id, demos, (inputs[-1],), (transform(inputs[-1]),))


def make_tasks(cfg: GridWorldConfig, count: int, first: int, prefix: str) -> list[ArcProblem]:
    """`count` tasks of the world, the i-th drawn from its own seeded stream (so a split's tasks do not depend
    on how many the other split has), families in turn."""
    families = families_named(list(cfg.families), "the grid world's families")
    if not 1 <= cfg.side[0] <= cfg.side[1] or not 1 <= cfg.colours <= 9 or cfg.demos < 2:
        raise UserError(f"grid world: need 1 <= side[0] <= side[1], 1 <= colours <= 9 and demos >= 2, got "
                        f"side={list(cfg.side)}, colours={cfg.colours}, demos={cfg.demos}")
    return [make_task(random.Random(f"{cfg.seed}-{i}"), f"{prefix}{cfg.seed}-{i:04d}", families[i % len(families)], cfg)
            for i in range(first, first + count)]


def make_split(cfg: GridWorldConfig, split: str) -> list[ArcProblem]:
    """The `train` or `heldout` tasks of the seeded world (disjoint: different task streams)."""
    if split == "train":
        return make_tasks(cfg, cfg.num_train, 0, "grid")
    return make_tasks(cfg, cfg.num_heldout, cfg.num_train, "grid")
