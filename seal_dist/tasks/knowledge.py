"""Knowledge incorporation (SEAL domain 1): passages, self-edit prompts, inner-loop jobs and rewards.

Pure and deterministic: nothing here touches a model or Ray.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from seal_dist.config import AnswerSpan, Metric, TaskConfig, UserError
from seal_dist.inner.job import InnerJob
from seal_dist.tasks import grading, synthetic
from seal_dist.tasks.segments import update_texts
from seal_dist.training import Example


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
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the data file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def load_file(path: str) -> list[Context]:
    return parse_records(read_records(path), path)


class KnowledgeTask:
    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    def load(self, split: str) -> list[Context]:
        """`train` or `heldout` contexts, from the synthetic world or a SEAL-schema file."""
        source = {"train": self.cfg.train_data, "heldout": self.cfg.heldout_data}[split]
        if source != "synthetic":
            return load_file(source)
        w = self.cfg.world
        records = synthetic.make_split(w.seed, w.num_train, w.num_heldout, w.facts_per_passage,
                                       synthetic.attributes_named(list(w.attributes), "task.world.attributes"))[split]
        return parse_records(records, f"synthetic{w.seed}-{split}")

    def prompt(self, ctx: Context) -> str:
        return self.cfg.prompt.template.format(title=ctx.title, context=ctx.text)

    def training_texts(self, ctx: Context, self_edit: str | None) -> tuple[str, ...]:
        return update_texts(ctx.title, ctx.text, self_edit)

    def answers_in_update(self, ctx: Context, self_edit: str | None) -> float | None:
        """The fraction of the context's answers that the update's training texts state: what it can teach
        at most (None: no update)."""
        if self_edit is None:
            return None
        texts = " ".join(self.training_texts(ctx, self_edit))
        return sum(grading.contains(texts, q.answer) for q in ctx.questions) / len(ctx.questions)

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

    def score(self, ctx: Context, generations: tuple[str, ...]) -> float:
        """Accuracy of the generations on the context's questions (the reward of SEAL's inner loop)."""
        grade = grading.exact_match if self.cfg.metric == Metric.exact_match else grading.f1
        span = grading.first_sentence if self.cfg.answer_span == AnswerSpan.sentence else grading.first_line
        answers = [span(g) for g in generations]
        return sum(grade(a, q.answer) for a, q in zip(answers, ctx.questions, strict=True)) / len(ctx.questions)
