"""Few-shot ARC (SEAL domain 2) behind the task interface: a context is an ARC task, a self-edit is a JSON
configuration of augmentations and training settings, its update is test-time training on the leave-n-out
problems of the demonstrations, and the reward is 1 iff the adapted model's two voted attempts solve every
test input. Deterministic and model-free, except that lengths are counted with the model's tokenizer."""

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from seal_dist.config import ArcTaskConfig, InnerConfig, UserError, to_container
from seal_dist.example import Example
from seal_dist.inner.job import InnerJob
from seal_dist.tasks.arc import data, fewshot, pretraining, world
from seal_dist.tasks.arc.augment import FAMILIES
from seal_dist.tasks.arc.data import ArcProblem
from seal_dist.tasks.arc.selfedit import STRATEGIES, ParseFailure, SelfEdit, parse_self_edit, to_json
from seal_dist.tasks.interface import Condition

IN_CONTEXT, ORACLE = "in-context (no TTT)", "oracle configuration"


@dataclass(frozen=True)
class Update:
    """What a self-edit's test-time training does; `reason` says why it trains nothing, where it does not."""

    examples: tuple[Example, ...]
    loss_on_all_tokens: bool
    lr: float | None
    epochs: int
    reason: str | None


class ArcTask:
    def __init__(self, cfg: ArcTaskConfig, inner: InnerConfig):
        self.cfg, self.batch_size = cfg, inner.batch_size
        if cfg.augmentation.max_tokens > inner.max_seq_len:
            raise UserError(f"task.augmentation.max_tokens={cfg.augmentation.max_tokens} exceeds "
                            f"inner.max_seq_len={inner.max_seq_len} (the update would train on cut-off problems)")
        for key, bounds in (("task.lr_bounds", cfg.lr_bounds), ("task.epoch_bounds", cfg.epoch_bounds)):
            if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
                raise UserError(f"{key} must be [low, high] with 0 <= low <= high, got {list(bounds)}")
        for families in cfg.oracle.augmentations:
            unknown = set(families) - set(FAMILIES)
            if unknown:
                raise UserError(f"task.oracle.augmentations: unknown families {sorted(unknown)} (known: {list(FAMILIES)})")
        unknown = set(cfg.oracle.strategies) - set(STRATEGIES)
        if unknown:
            raise UserError(f"task.oracle.strategies: unknown {sorted(unknown)} (known: {list(STRATEGIES)})")
        self.count_tokens: Callable[[str], int] | None = None

    def load(self, split: str) -> list[ArcProblem]:
        """`train` or `heldout` tasks, from the synthetic grid world or ARC-AGI challenge and solution files."""
        source = {"train": self.cfg.train, "heldout": self.cfg.heldout}[split]
        found = (world.make_split(self.cfg.world, split) if source.challenges == "synthetic"
                 else data.load(source.challenges, source.solutions))
        if source.tasks is None:
            return found
        by_id = {t.id: t for t in found}
        missing = [t for t in source.tasks if t not in by_id]
        if missing:
            raise UserError(f"task.{split}.tasks: no task {', '.join(missing)} in {source.challenges}")
        return [by_id[t] for t in source.tasks]

    def prompt(self, ctx: ArcProblem) -> str:
        return self.cfg.chat_template.format(prompt=self.cfg.prompt.template.format(demonstrations=demonstrations(ctx)))

    def parse_failure(self, self_edit: str) -> str | None:
        parsed = parse_self_edit(self_edit)
        return f"{parsed.field}: {parsed.reason}" if isinstance(parsed, ParseFailure) else None

    def use_tokenizer(self, tokenizer) -> None:
        self.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def update(self, ctx: ArcProblem, self_edit: str | None, seed: int) -> Update:
        """The self-edit's training set and settings (lr and epochs clamped to their bounds), or why it trains
        nothing: no self-edit, one that does not parse, or more than task.max_steps steps (the cost guard)."""
        if self_edit is None:
            return Update((), False, None, 0, "no update")
        edit = parse_self_edit(self_edit)
        if isinstance(edit, ParseFailure):
            return Update((), False, None, 0, f"does not parse: {edit.field}: {edit.reason}")
        if self.count_tokens is None:
            raise RuntimeError("ArcTask.use_tokenizer must be called before updates are built")
        a = self.cfg.augmentation
        pairs = fewshot.training_set(ctx.demos, edit.families(), random.Random(seed), a.max_side, a.max_tokens,
                                     self.count_tokens, a.max_examples, a.colour_permutations, a.order_permutations)
        lr, epochs = clamp(edit.learning_rate, self.cfg.lr_bounds), clamp(edit.epochs, self.cfg.epoch_bounds)
        steps = epochs * len(pairs) / self.batch_size
        if steps > self.cfg.max_steps:
            return Update((), edit.loss_on_all_tokens, lr, 0, f"cost guard: {steps:.0f} steps > {self.cfg.max_steps}")
        examples = tuple(Example(prompt, completion) for prompt, completion in pairs)
        return Update(examples, edit.loss_on_all_tokens, lr, epochs, None if examples and epochs else "no steps")

    def make_job(self, job_id: str, ctx: ArcProblem, self_edit: str | None, policy_version: int, seed: int) -> InnerJob:
        u = self.update(ctx, self_edit, seed)
        return InnerJob(job_id=job_id, policy_version=policy_version, examples=u.examples,
                        loss_on_prompt=u.loss_on_all_tokens, eval_prompts=self.eval_prompts(ctx), seed=seed, lr=u.lr,
                        epochs=u.epochs)

    def eval_prompts(self, ctx: ArcProblem) -> tuple[str, ...]:
        return tuple(fewshot.prompt(q.problem) for test in ctx.tests for q in fewshot.queries(ctx.demos, test))

    def score(self, ctx: ArcProblem, generations: tuple[str, ...]) -> float:
        """1.0 iff for every test input one of the two attempts voted from the answers equals its solution."""
        if ctx.solutions is None:
            raise UserError(f"ARC task {ctx.id} has no solutions: give the split's solutions file")
        answers, solved = iter(generations), []
        for test, solution in zip(ctx.tests, ctx.solutions, strict=True):
            queries = fewshot.queries(ctx.demos, test)
            solved.append(solution in fewshot.attempts(queries, [next(answers) for _ in queries]))
        return float(all(solved))

    def items(self, ctx: ArcProblem) -> int:
        return len(ctx.tests)

    def keep_items(self, ctx: ArcProblem, keep: tuple[int, ...]) -> ArcProblem:
        raise UserError("eval.questions: an ARC task is graded on all its test inputs (set eval.questions=null)")

    def close(self) -> None:
        pass  # nothing started

    def counters(self) -> dict[str, int]:
        return {}  # grading is a comparison of grids

    def describe(self, ctx: ArcProblem, self_edit: str | None) -> dict[str, float]:
        """What the self-edit chose: whether it parses, its families and strategy, its (clamped) learning rate
        and epochs, and whether it trains at all (it parses and passes the cost guard)."""
        if self_edit is None:
            return {}
        edit, update = parse_self_edit(self_edit), self.update(ctx, self_edit, seed=0)
        if isinstance(edit, ParseFailure):
            return {"parsed": 0.0, "trained": 0.0}
        return {"parsed": 1.0, **{family: float(family in edit.families()) for family in FAMILIES},
                "all_tokens": float(edit.loss_on_all_tokens), "lr": update.lr, "epochs": float(clamp(edit.epochs, self.cfg.epoch_bounds)),
                "trained": float(update.reason is None)}

    def conditions(self, contexts: list[ArcProblem], eval_cfg: DictConfig) -> tuple[list[Condition], list[Condition]]:
        """In-context learning (no update) before the policies; after them the oracle: per task, the best of
        the configured grid of configurations."""
        if eval_cfg.self_edits_files:
            raise UserError("eval.self_edits_files: self-edits from files are for knowledge incorporation")
        grid = [to_json(edit) for edit in self.oracle_grid()]
        return [Condition(IN_CONTEXT, {c.id: [None] for c in contexts})], \
            [Condition(ORACLE, {c.id: grid for c in contexts}, best_of=True)]

    def oracle_grid(self) -> list[SelfEdit]:
        o = self.cfg.oracle
        return [SelfEdit(**{family: family in families for family in FAMILIES}, loss_on_all_tokens=STRATEGIES[strategy],
                         learning_rate=lr, epochs=epochs)
                for families, strategy, lr, epochs in itertools.product(o.augmentations, o.strategies,
                                                                        o.learning_rates, o.epochs)]

    def pretraining_spec(self) -> dict:
        return {"pretraining": to_container(self.cfg.pretraining), "prompt": self.cfg.prompt.template,
                "chat": self.cfg.chat_template}

    def pretraining_corpus(self, seed: int) -> list[Example]:
        return pretraining.corpus(self.cfg.pretraining, self.prompt, seed)


def clamp(value, bounds):
    """The value brought into [low, high]."""
    return min(max(value, bounds[0]), bounds[1])


def demonstrations(ctx: ArcProblem) -> str:
    """The task's demonstrations as the self-edit prompt shows them: each input and output grid, one line per
    row, cells separated by spaces."""
    return "\n\n".join(fewshot.demonstration(pair) for pair in ctx.demos)
