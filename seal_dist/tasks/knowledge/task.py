"""Knowledge incorporation (SEAL domain 1) behind the task interface: passages, self-edit prompts, inner-loop
jobs and rewards. Pure and deterministic: nothing here touches a model or Ray.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from seal_dist.config import AnswerSpan, KnowledgeTaskConfig, Metric, UserError, to_container
from seal_dist.example import Example
from seal_dist.inner.job import InnerJob
from seal_dist.tasks.files import read_json
from seal_dist.tasks.interface import Condition
from seal_dist.tasks.knowledge import grading, pretraining, world
from seal_dist.tasks.knowledge.judge import Judge
from seal_dist.tasks.knowledge.segments import update_texts


@dataclass(frozen=True)
class Question:
    question: str
    answer: str


@dataclass(frozen=True)
class Context:
    id: str
    title: str
    text: str
    questions: tuple[Question, ...]


class DataError(UserError):
    """A data file that is missing or does not follow the SEAL reference schema."""


def parse_records(records: object, source: str) -> list[Context]:
    """Validates records in the SEAL schema; errors name the source, the record and the field."""
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a JSON list of passages, got {type(records).__name__}")
    contexts = []
    for i, rec in enumerate(records):
        where = f"{source}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("title", "context"):
            if not isinstance(rec.get(key), str):
                raise DataError(f"{where}: field '{key}' must be a string")
        questions = rec.get("questions")
        if not isinstance(questions, list) or not questions:
            raise DataError(f"{where}: field 'questions' must be a non-empty list")
        parsed = []
        for j, q in enumerate(questions):
            if not (isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("answer"), str)):
                raise DataError(f"{where}: questions[{j}] must have string fields 'question' and 'answer'")
            parsed.append(Question(q["question"], q["answer"]))
        contexts.append(Context(f"{Path(source).stem}-{i:05d}", rec["title"], rec["context"], tuple(parsed)))
    return contexts


def read_records(path: str) -> object:
    """The JSON in a data file."""
    return read_json(path, DataError, "data")


def load_file(path: str) -> list[Context]:
    return parse_records(read_records(path), path)


def _synthetic(w, key: str, split: str) -> list[Context]:
    """A split of a synthetic world (`key` names its attributes setting in errors)."""
    records = world.make_split(w.seed, w.num_train, w.num_heldout, w.facts_per_passage,
                               world.attributes_named(list(w.attributes), key))[split]
    return parse_records(records, f"synthetic{w.seed}-{split}")


NO_UPDATE, PASSAGE = "no update", "passage only"


class KnowledgeTask:
    def __init__(self, cfg: KnowledgeTaskConfig):
        self.cfg = cfg
        if cfg.grader.kind == Metric.judge and cfg.grader.judge is None:
            raise UserError("task.grader.kind=judge needs task.grader.judge (task/grader=judge or judge_vllm)")
        self.judge = Judge(cfg.grader.judge) if cfg.grader.kind == Metric.judge else None

    def load(self, split: str) -> list[Context]:
        """`train` or `heldout` contexts, from the synthetic world or a SEAL-schema file; or `pretraining`: the
        passages of the tiny model's pretraining world (what that model knows)."""
        if split == "pretraining":
            return _synthetic(self.cfg.pretraining.world, "task.pretraining.world.attributes", "train")
        source = {"train": self.cfg.train_data, "heldout": self.cfg.heldout_data}[split]
        return _synthetic(self.cfg.world, "task.world.attributes", split) if source == "synthetic" else load_file(source)

    def prompt(self, ctx: Context) -> str:
        return self.cfg.prompt.template.format(title=ctx.title, context=ctx.text)

    def parse_failure(self, self_edit: str) -> str | None:
        return None  # any text is a self-edit: its lines are the training sequences

    def training_texts(self, ctx: Context, self_edit: str | None) -> tuple[str, ...]:
        return update_texts(ctx.title, ctx.text, self_edit, self.cfg.max_sequences, self.cfg.implications_only)

    def describe(self, ctx: Context, self_edit: str | None) -> dict[str, float]:
        """answers_stated: the fraction of the context's answers that the update's training texts state, what
        it can teach at most."""
        if self_edit is None:
            return {}
        texts = " ".join(self.training_texts(ctx, self_edit))
        return {"answers_stated": sum(grading.contains(texts, q.answer) for q in ctx.questions) / len(ctx.questions)}

    def items(self, ctx: Context) -> int:
        return len(ctx.questions)

    def keep_items(self, ctx: Context, keep: tuple[int, ...]) -> Context:
        return replace(ctx, questions=tuple(ctx.questions[i] for i in keep))

    def conditions(self, contexts: list[Context], eval_cfg: DictConfig) -> tuple[list[Condition], list[Condition]]:
        """No update and the passage alone before the policies; after them, self-edits from each SEAL-schema file
        (eval.self_edits_files, a row each under its name)."""
        before = [Condition(NO_UPDATE, {c.id: [None] for c in contexts}), Condition(PASSAGE, {c.id: [""] for c in contexts})]
        after = [Condition(name, file_self_edits(path, contexts, eval_cfg.samples))
                 for name, path in eval_cfg.self_edits_files.items()]
        return before, after

    def use_tokenizer(self, tokenizer) -> None:
        pass  # lengths are the inner loop's (inner.max_seq_len)

    def pretraining_spec(self) -> dict:
        return {"pretraining": to_container(self.cfg.pretraining), "prompt": self.cfg.prompt.template}

    def pretraining_corpus(self, seed: int) -> list[Example]:
        return pretraining.pretraining_corpus(self.cfg.pretraining, self.cfg.prompt.template, seed)

    def eval_prompts(self, ctx: Context) -> tuple[str, ...]:
        return tuple(
            self.cfg.answer_template.format(
                question=self.cfg.question_template.format(title=ctx.title, question=q.question)
            )
            for q in ctx.questions
        )

    def make_job(self, job_id: str, ctx: Context, self_edit: str | None, policy_version: int, seed: int) -> InnerJob:
        """One update on the self-edit's sequences, each trained whole, at the inner loop's lr and epochs."""
        return InnerJob(
            job_id=job_id,
            policy_version=policy_version,
            examples=tuple(Example("", text) for text in self.training_texts(ctx, self_edit)),
            loss_on_prompt=True,
            eval_prompts=self.eval_prompts(ctx),
            seed=seed,
            lr=None,
            epochs=None,
        )

    def answer(self, generation: str) -> str:
        """The part of a generation that is graded as its answer (task.answer_span)."""
        span = grading.first_sentence if self.cfg.answer_span == AnswerSpan.sentence else grading.first_line
        return span(generation)

    def score(self, ctx: Context, generations: tuple[str, ...]) -> float:
        """Accuracy of the generations on the context's questions (the reward of SEAL's inner loop), by
        task.grader: exact match, token F1, or the LLM judge's verdicts."""
        answers = [self.answer(g) for g in generations]
        pairs = list(zip(answers, ctx.questions, strict=True))
        if self.judge is not None:
            grades = self.judge.grade([(q.question, q.answer, a) for a, q in pairs])
        else:
            grade = grading.exact_match if self.cfg.grader.kind == Metric.exact_match else grading.f1
            grades = [grade(a, q.answer) for a, q in pairs]
        return sum(grades) / len(ctx.questions)

    def close(self) -> None:
        if self.judge is not None:
            self.judge.close()

    def counters(self) -> dict[str, int]:
        return {} if self.judge is None else {"judge/calls": self.judge.calls, "judge/cache_hits": self.judge.cache_hits}


def file_self_edits(path: str, contexts: list[Context], samples: int) -> dict[str, list[str]]:
    """The first `samples` completions of each context in a SEAL-schema file, matched by title and passage."""
    records = read_records(path)
    parse_records(records, path)  # the file must follow the SEAL schema, questions included
    by_passage = {(r["title"], r["context"]): r.get("completions", []) for r in records}
    found = {}
    for ctx in contexts:
        completions = by_passage.get((ctx.title, ctx.text))
        if not completions:
            raise DataError(f"{path}: no completions for the held-out passage '{ctx.title}' ({ctx.id})")
        found[ctx.id] = completions[:samples]
    return found
