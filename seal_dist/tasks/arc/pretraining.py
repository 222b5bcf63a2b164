"""The tiny model's pretraining corpus for ARC: solved few-shot problems of the grid world's pretraining tasks
(the grid format, and in-context learning of their families), and self-edit prompts of those tasks each
followed by a random configuration in the self-edit JSON (what the round-0 policy samples from: some
configurations train well, most do not, and reinforcement learning has to find which)."""

import random
from collections.abc import Callable

from seal_dist.config import ArcPretrainingConfig
from seal_dist.example import Example
from seal_dist.tasks.arc import fewshot, world
from seal_dist.tasks.arc.augment import FAMILIES
from seal_dist.tasks.arc.data import ArcProblem
from seal_dist.tasks.arc.grids import format_grid
from seal_dist.tasks.arc.selfedit import STRATEGIES, SelfEdit, to_json


def random_self_edit(rng: random.Random, cfg: ArcPretrainingConfig) -> SelfEdit:
    return SelfEdit(**{family: rng.random() < 0.5 for family in FAMILIES},
                    loss_on_all_tokens=STRATEGIES[rng.choice(sorted(STRATEGIES))],
                    learning_rate=rng.choice(list(cfg.learning_rates)), epochs=rng.choice(list(cfg.epochs)))


def corpus(cfg: ArcPretrainingConfig, prompt: Callable[[ArcProblem], str], seed: int) -> list[Example]:
    """Each pretraining task solved from its demonstrations (and each leave-one-out problem of it), and
    cfg.self_edits self-edit prompts of those tasks with random configurations; shuffled."""
    rng = random.Random(seed)
    tasks = world.make_tasks(cfg.world, cfg.world.num_train, 0, "pretraining")
    examples = []
    for task in tasks:
        problems = [(fewshot.Problem(task.demos, task.tests[0]), task.solutions[0]), *fewshot.leave_n_out(task.demos, 1)]
        examples += [Example("", fewshot.prompt(p) + format_grid(target)) for p, target in problems]
    examples += [Example(prompt(rng.choice(tasks)), to_json(random_self_edit(rng, cfg))) for _ in range(cfg.self_edits)]
    rng.shuffle(examples)
    return examples
