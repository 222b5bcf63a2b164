"""A model that adapts itself to documents, one bounded update at a time: for each document it writes a
self-edit, trains a fresh LoRA update on the self-edit's sequences, clips the update's norms, answers the
retention and locality probes, and keeps the update (merged into its weights, or stacked as an adapter) or
rolls it back exactly. Used by `seal-dist adapt` and by the continual experiment; knowledge documents only."""

import copy
import dataclasses
import math
import shutil
from pathlib import Path

import peft
import torch

from seal_dist import guard
from seal_dist.config import Compose, UserError
from seal_dist.tasks.knowledge.task import Context, KnowledgeTask
from seal_dist.training import fine_tune, generate, lora_config, mean_loss, train_only


def split_questions(doc: Context, probes: int) -> tuple[Context, Context]:
    """The document with only its first `probes` questions (its retention probes), and with the rest (what an
    evaluation may ask)."""
    return (dataclasses.replace(doc, questions=doc.questions[:probes]),
            dataclasses.replace(doc, questions=doc.questions[probes:]))


class SelfUpdater:
    def __init__(self, model, tokenizer, task: KnowledgeTask, cfg, locality: list[Context]):
        """`model`: the model to adapt (the policy already merged in); `locality`: the contexts whose questions
        are the locality probes; `cfg`: the run's config (inner, guard, sampler, adapt)."""
        self.model, self.tokenizer, self.task, self.cfg = model, tokenizer, task, cfg
        self.free, self.anchors = guard.targets(model, list(cfg.inner.lora.target_modules), cfg.guard.anchors)
        self.anchor_print = guard.fingerprint(model, self.anchors)
        if cfg.guard.forgetting.enabled and not locality:
            raise UserError(f"guard.forgetting: no locality probe found in the {cfg.guard.forgetting.locality_split} split "
                            "(with locality_known=true: the unadapted model answers none of its questions correctly)")
        self.locality = locality
        self.reference = self._locality_answers()  # the unadapted model's answers
        self.learned: list[Context] = []  # the documents whose update was kept, in order
        self.stacked: list[str] = []  # compose=stack: the kept updates' adapter names

    def base(self) -> torch.nn.Module:
        return self.model.get_base_model() if isinstance(self.model, peft.PeftModel) else self.model

    def answer(self, contexts: list[Context]) -> list[float]:
        """Each context's accuracy on its questions (greedy answers of the model as it is now)."""
        return accuracies(self.model, self.tokenizer, self.task, contexts, self.cfg.inner.eval_batch_size)

    def _locality_answers(self) -> tuple[str, ...]:
        prompts = [p for c in self.locality for p in self.task.eval_prompts(c)]
        return tuple(self.task.answer(a) for a in generate(self.model, self.tokenizer, prompts, self.task.cfg.max_answer_tokens,
                                                 self.cfg.inner.eval_batch_size, 0.0, 1.0))

    def _retention(self) -> float | None:
        """The mean accuracy on the retention probes of the documents taken in so far (None: there are none)."""
        probes = [split_questions(d, self.cfg.guard.forgetting.probes_per_document)[0] for d in self.learned]
        scores = [s for s in self.answer(probes) if not math.isnan(s)]
        return sum(scores) / len(scores) if scores else None

    def write_self_edit(self, doc: Context, seed: int) -> str:
        torch.manual_seed(seed)
        return generate(self.model, self.tokenizer, [self.task.prompt(doc)], self.cfg.sampler.max_tokens, 1,
                        self.cfg.adapt.temperature, self.cfg.sampler.top_p)[0]

    def step(self, doc: Context, index: int, seed: int, save_to: Path | None) -> dict:
        """Takes in one document: its report record. The document itself is always one of the update's training
        sequences (an empty self-edit trains on it alone). A kept update's adapter is written to save_to first."""
        self_edit = self.write_self_edit(doc, seed)
        job = self.task.make_job(doc.id, doc, self_edit, 0, seed)
        record = {"index": index, "document": doc.id, "title": doc.title, "self_edit": self_edit,
                  "sequences": [ex.completion for ex in job.examples]}
        retention_before, own_before = self._retention(), self._own_probes(doc)
        name = f"update-{index:03d}"
        params = self._open(name, seed)
        examples, loss_on_prompt = list(job.examples), job.loss_on_prompt
        loss_before = mean_loss(self.model, self.tokenizer, examples, self.cfg.inner.max_seq_len, loss_on_prompt,
                                self.cfg.inner.pad_to)
        losses = fine_tune(self.model, self.tokenizer, params, examples, self.cfg.inner.lr, self.cfg.inner.epochs,
                           self.cfg.inner, seed, loss_on_prompt)
        record["loss_before"] = loss_before
        if not all(math.isfinite(loss) for loss in losses):
            self._close(name, keep=False)
            return {**record, "decision": "rejected", "reason": "non-finite training loss"}
        raw = guard.update_norms(self.model, name)
        clipped = guard.clip(self.model, name, self.cfg.guard.max_module_norm, self.cfg.guard.max_total_norm)
        rule, scale = self.cfg.guard.forgetting, 1.0
        for attempt in range(rule.shrink_tries + 1):  # the largest scale of the update that forgets within bounds
            after = guard.Probes(self._retention(), self._locality_answers())
            changed, reason = guard.forgetting(retention_before, after, self.reference, rule)
            if reason is None or attempt == rule.shrink_tries:
                break
            guard.scale(self.model, name, rule.shrink_factor)
            scale *= rule.shrink_factor
        keep, own_after = reason is None, self._own_probes(doc)
        norms = guard.update_norms(self.model, name)
        decision = "rejected" if not keep else "shrunk" if scale < 1.0 else "clipped" if clipped else "kept"
        record |= {
            "loss_after": mean_loss(self.model, self.tokenizer, examples, self.cfg.inner.max_seq_len, loss_on_prompt,
                                    self.cfg.inner.pad_to),
            "norm_total": guard.total_norm(norms), "norm_max_module": max(norms.values()),
            "norm_total_unclipped": guard.total_norm(raw), "norm_max_module_unclipped": max(raw.values()),
            "retention_before": retention_before, "retention_after": after.retention,
            "own_probes_before": own_before, "own_probes_after": own_after, "locality_changed": changed,
            "scale": scale, "decision": decision, "reason": reason,
        }
        if keep and save_to is not None:
            save_adapter(self.model, name, save_to)
        self._close(name, keep)
        if keep:
            self.learned.append(doc)
        return record

    def _own_probes(self, doc: Context) -> float | None:
        probes = split_questions(doc, self.cfg.guard.forgetting.probes_per_document)[0]
        return self.answer([probes])[0] if probes.questions else None

    def _open(self, name: str, seed: int) -> list[torch.nn.Parameter]:
        """A fresh LoRA update (B = 0: the model is unchanged) on the free modules, on top of any stacked ones;
        returns its parameters, the only trainable ones."""
        config = lora_config(self.cfg.inner.lora, self.free)
        torch.manual_seed(seed)
        if isinstance(self.model, peft.PeftModel):
            self.model.add_adapter(name, config)
        else:
            self.model = peft.get_peft_model(self.model, config, adapter_name=name)
        self.model.base_model.set_adapter([*self.stacked, name])
        return train_only(self.model, name)

    def _close(self, name: str, keep: bool) -> None:
        """Keeps the open update (merged into the weights, or stacked), or removes it: the model is then
        exactly as before it was opened. Checks that no trust anchor changed."""
        if keep and Compose(self.cfg.adapt.compose) == Compose.merge:
            self.model = self.model.merge_and_unload()
        elif keep:
            self.stacked.append(name)
            self.model.base_model.set_adapter(self.stacked)
        elif self.stacked:
            self.model.delete_adapter(name)
            self.model.base_model.set_adapter(self.stacked)
        else:
            self.model = self.model.unload()
        if guard.fingerprint(self.base(), self.anchors) != self.anchor_print:
            raise RuntimeError(f"a trust anchor changed in {name}: guard.anchors failed to hold")

    def load_kept(self, doc: Context, adapter: Path) -> None:
        """Re-applies an update that an earlier (interrupted) adapt kept and saved."""
        name = adapter.name
        if isinstance(self.model, peft.PeftModel):
            self.model.load_adapter(str(adapter), adapter_name=name)
        else:
            self.model = peft.PeftModel.from_pretrained(self.model, str(adapter), adapter_name=name)
        self._close(name, keep=True)
        self.learned.append(doc)

    def merged(self) -> torch.nn.Module:
        """The adapted model as plain weights (stacked updates merged into a copy)."""
        if not isinstance(self.model, peft.PeftModel):
            return self.model
        return copy.deepcopy(self.model).merge_and_unload()


def accuracies(model, tokenizer, task: KnowledgeTask, contexts: list[Context], batch_size: int) -> list[float]:
    """Each context's accuracy on its questions, from the model's greedy answers (NaN: it has none)."""
    asked = [c for c in contexts if c.questions]
    prompts = [p for c in asked for p in task.eval_prompts(c)]
    answers = iter(generate(model, tokenizer, prompts, task.cfg.max_answer_tokens, batch_size, 0.0, 1.0))
    scores = {c.id: task.score(c, tuple(next(answers) for _ in c.questions)) for c in asked}
    return [scores.get(c.id, math.nan) for c in contexts]


def locality_probes(model, tokenizer, task: KnowledgeTask, candidates: list[Context], rule, batch_size: int) -> list[Context]:
    """The locality probes: the candidates' first `rule.locality_questions` questions, or, with
    rule.locality_known, the first ones that the unadapted model answers correctly (knowledge it has, which an
    update must not take away; a wrong guess changes under any update). One question per context."""
    singles = [dataclasses.replace(c, id=f"{c.id}-q{j}", questions=(q,)) for c in candidates for j, q in enumerate(c.questions)]
    if not rule.locality_known:
        return singles[: rule.locality_questions]
    known = []
    for start in range(0, len(singles), batch_size):
        chunk = singles[start : start + batch_size]
        known += [c for c, score in zip(chunk, accuracies(model, tokenizer, task, chunk, batch_size)) if score == 1.0]
        if len(known) >= rule.locality_questions:
            break
    return known[: rule.locality_questions]


def save_adapter(model: peft.PeftModel, name: str, dest: Path) -> None:
    """Writes one adapter of the model to dest as a PEFT adapter folder, atomically."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=[name])  # into tmp/<name>/, a model card beside it
    (tmp / name).rename(dest)
    shutil.rmtree(tmp)


def check_lengths(task: KnowledgeTask, tokenizer, docs: list[Context], max_new_tokens: int, max_len: int) -> None:
    """Refuses (before anything is done) every document whose self-edit prompt cannot fit the model's length
    with its self-edit."""
    for doc in docs:
        n = len(tokenizer(task.prompt(doc), add_special_tokens=False)["input_ids"])
        if n + max_new_tokens > max_len:
            raise UserError(f"document {doc.id} ('{doc.title}'): its self-edit prompt is {n} tokens; with "
                            f"sampler.max_tokens={max_new_tokens} that exceeds sampler.max_model_len={max_len}: "
                            "refused (split it into shorter documents)")
