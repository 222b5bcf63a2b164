"""Few-shot problems from an ARC task's demonstrations: the test-time training set, the queries asked of the
adapted model for a test input, and the two attempts voted from its answers."""

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from itertools import combinations

from seal_dist.tasks.arc.augment import FAMILIES, IDENTITY, INFERENCE, ShapeError, Transform
from seal_dist.tasks.arc.grids import Grid, Pair, format_grid, parse_grid
from seal_dist.tasks.arc.vote import vote


@dataclass(frozen=True)
class Problem:
    """Demonstrations and a query input."""

    demos: tuple[Pair, ...]
    query: Grid

    def mapped(self, f: Callable[[Grid], Grid]) -> "Problem":
        """f applied to every grid."""
        return Problem(tuple((f(i), f(o)) for i, o in self.demos), f(self.query))

    def grids(self) -> tuple[Grid, ...]:
        return (*(g for pair in self.demos for g in pair), self.query)


@dataclass(frozen=True)
class Query:
    group: str  # the voting group: "identity" or the transform's name
    transform: Transform  # how problem was made from the task; its inverse maps an answer back
    problem: Problem


def demonstration(pair: Pair) -> str:
    """One demonstration as text: its input and output grids under their labels."""
    return f"input:\n{format_grid(pair[0])}\noutput:\n{format_grid(pair[1])}"


def prompt(problem: Problem) -> str:
    """The text a model completes with format_grid of the query's output."""
    shots = "".join(f"{demonstration(pair)}\n\n" for pair in problem.demos)
    return f"{shots}input:\n{format_grid(problem.query)}\noutput:\n"


def leave_n_out(demos: tuple[Pair, ...], n: int) -> list[tuple[Problem, Grid]]:
    """(problem, target) pairs: each demonstration in turn is the query, its output the target, and each choice
    of n - 1 of the others is dropped; the rest stay demonstrations, in order. With d demonstrations that is
    d * C(d - 1, n - 1) problems where d > n, else none: n=1 gives d, n=2 gives d * (d - 1)."""
    problems = []
    for q, (query, target) in enumerate(demos):
        others = [k for k in range(len(demos)) if k != q]
        for dropped in combinations(others, n - 1):
            kept = tuple(demos[k] for k in others if k not in dropped)
            if kept:
                problems.append((Problem(kept, query), target))
    return problems


def training_set(
    demos: tuple[Pair, ...],
    families: Iterable[str],
    rng: random.Random,
    max_side: int,
    max_tokens: int,
    count_tokens: Callable[[str], int],
    max_examples: int,
    colour_permutations: int,
    order_permutations: int,
) -> list[tuple[str, str]]:
    """(prompt, completion) texts for test-time training, as the reference builds them.

    The leave-one-out and leave-two-out problems, as they are and under every transform of each family in
    families; those with a grid over max_side a side or over max_tokens in all are dropped. Each problem that
    is kept also comes colour_permutations times with its colours 1-9 permuted (0, the background, stays) and
    order_permutations times with its demonstrations in a random order. Duplicates are removed, then the rest is
    shuffled and cut to max_examples. The same rng state gives the same list.
    """
    base = leave_n_out(demos, 1) + leave_n_out(demos, 2)
    transforms = [IDENTITY, *(t for family in families for t in FAMILIES[family])]
    made = dict.fromkeys((p.mapped(t.forward), t.forward(target)) for t in transforms for p, target in base)
    examples = []
    for problem, target in made:
        if not all(len(g) <= max_side and len(g[0]) <= max_side for g in (*problem.grids(), target)):
            continue
        texts = _texts(problem, target)
        if count_tokens("".join(texts)) > max_tokens:
            continue
        examples.append(texts)
        for _ in range(colour_permutations):
            recolour = partial(_recoloured, (0, *rng.sample(range(1, 10), 9)))
            examples.append(_texts(problem.mapped(recolour), recolour(target)))
        for _ in range(order_permutations):
            order = tuple(rng.sample(problem.demos, len(problem.demos)))
            examples.append(_texts(Problem(order, problem.query), target))
    examples = list(dict.fromkeys(examples))
    rng.shuffle(examples)
    return examples[:max_examples]


def _texts(problem: Problem, target: Grid) -> tuple[str, str]:
    return prompt(problem), format_grid(target)


def _recoloured(colours: tuple[int, ...], g: Grid) -> Grid:
    return tuple(tuple(colours[c] for c in row) for row in g)


def queries(demos: tuple[Pair, ...], test_input: Grid) -> list[Query]:
    """The queries for one test input, as the reference asks them: each leave-one-out set of demonstrations
    (all of them where there is one), as given and reversed (group "identity"; duplicates once), and the first
    of those sets with the test input under each INFERENCE transform (group = the transform's name)."""
    sets = [demos] if len(demos) == 1 else [demos[:k] + demos[k + 1:] for k in range(len(demos))]
    plain = dict.fromkeys(Problem(s, test_input) for kept in sets for s in (kept, kept[::-1]))
    first = Problem(sets[0], test_input)
    return [Query("identity", IDENTITY, p) for p in plain] + \
        [Query(t.name, t, first.mapped(t.forward)) for t in INFERENCE]


def attempts(queries: list[Query], answers: list[str]) -> tuple[Grid, Grid]:
    """Attempts 1 and 2 from the answers to queries (one each): each answer parsed as a grid and mapped back by
    its query's inverse transform, those that do not parse or cannot be mapped back dropped, the rest voted."""
    candidates = []
    for query, answer in zip(queries, answers, strict=True):
        grid = parse_grid(answer)
        if grid is not None:
            try:
                candidates.append((query.group, query.transform.inverse(grid)))
            except ShapeError:
                pass  # a shape the transform cannot have produced
    return vote(candidates)
