"""The inner loop (the batched engine, the default) and the policy learner on one device, without Ray: real
adapters on the tiny model."""

import dataclasses
import json

import pytest
import torch
from omegaconf import OmegaConf

from seal_dist.example import Example
from seal_dist.inner.batched import BatchedEngine
from seal_dist.inner.job import InnerJob
from seal_dist.learner.sft import PolicyTrainer
from seal_dist.models import load_model, load_tokenizer
from seal_dist.policy import Policy
from seal_dist.tasks.knowledge.task import KnowledgeTask
from tests.conftest import fast_config

ALL_PROJECTIONS = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_cache, tiny_model):
    torch.set_num_threads(2)
    cfg = fast_config(tmp_path_factory.mktemp("inner"), model_cache, "inner.epochs=40", "inner.lr=1e-2",
                      "inner.lora.r=8", "inner.lora.alpha=16",
                      f"inner.lora.target_modules={ALL_PROJECTIONS}", "learner.epochs=10", "learner.lr=1e-2")
    task = KnowledgeTask(cfg.task)
    engine = BatchedEngine(load_model(tiny_model, "float32", "cpu"), load_tokenizer(tiny_model), cfg.inner,
                           cfg.task.max_answer_tokens, worker=0)
    return cfg, task, Loop(engine)


class Loop:
    """One job at a time through the engine."""

    def __init__(self, engine):
        self.engine = engine

    def run(self, job: InnerJob):
        [result] = self.engine.run([job])
        return result

    def set_policy(self, version: int, path: str | None) -> None:
        self.engine.set_policy(version, path)


def learnable_job(task, ctx, job_id="learn") -> InnerJob:
    """A job whose training texts are its own questions (sentences to complete) completed by their answers."""
    prompts = task.eval_prompts(ctx)
    examples = tuple(Example("", f"{p} {q.answer}.") for p, q in zip(prompts, ctx.questions))
    return InnerJob(job_id, 0, examples, True, prompts, 5, None, None)


def test_lora_update_lowers_loss_and_raises_score(setup):
    cfg, task, loop = setup
    ctx = task.load("heldout")[0]
    before = loop.run(task.make_job("base", ctx, None, 0, seed=1))
    assert before.loss_before is None and before.loss_after is None  # no update: baseline only
    result = loop.run(learnable_job(task, ctx))
    assert result.loss_after < 0.5 * result.loss_before
    assert task.score(ctx, result.generations) >= task.score(ctx, before.generations) + 0.6


def test_each_job_starts_from_a_fresh_adapter(setup):
    cfg, task, loop = setup
    ctx = task.load("heldout")[1]
    baseline = loop.run(task.make_job("b1", ctx, None, 0, seed=1)).generations
    first = loop.run(learnable_job(task, ctx, "l1"))
    assert loop.run(task.make_job("b2", ctx, None, 0, seed=1)).generations == baseline
    again = loop.run(learnable_job(task, ctx, "l2"))
    assert again.generations == first.generations and again.loss_after == pytest.approx(first.loss_after, rel=1e-4)


def test_policy_versions_change_the_model_that_jobs_update(setup, tiny_model, tmp_path):
    cfg, task, loop = setup
    ctx = task.load("heldout")[2]
    prompt, target = task.eval_prompts(ctx)[0], " Tokyo Tokyo Tokyo"
    trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path), torch_threads=2, seed=0)
    first = trainer.update([(prompt, target)] * 4, version=1, seed=0)
    assert first["policy"] == Policy(1, tiny_model, str(tmp_path / "v1"))
    base_job = InnerJob("p0", 0, (), True, (prompt,), 1, None, None)
    base_out = loop.run(base_job).generations
    loop.set_policy(1, first["policy"].adapter)
    with pytest.raises(RuntimeError, match="worker holds v1"):
        loop.run(base_job)
    policy_out = loop.run(InnerJob("p1", 1, (), True, (prompt,), 1, None, None)).generations
    assert policy_out != base_out and "Tokyo" in policy_out[0]
    loop.set_policy(0, None)
    assert loop.run(base_job).generations == base_out



def test_the_policy_update_is_reproducible_from_its_seed(setup, tiny_model, tmp_path):
    """Two learners with the same seed make the same adapter from the same data (the adapter's initialisation
    once came from whatever state the global RNG had in the learner's process, so runs diverged)."""
    from safetensors.torch import load_file

    cfg, task, _ = setup
    ctx = task.load("heldout")[3]
    data = [(task.prompt(ctx), "1. A fact.")] * 2
    paths = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        torch.rand(7 if name == "b" else 1)  # a different global RNG state before each learner starts
        trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path / name), torch_threads=2, seed=seed)
        paths.append(trainer.update(data, version=1, seed=0)["policy"].adapter)
    a, b, c = (load_file(f"{p}/adapter_model.safetensors") for p in paths)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_merged_policy_update_is_its_adapter_merged_into_the_model_and_the_next_starts_on_it(setup, tiny_model,
                                                                                              tmp_path):
    """learner.merge: each version is a model folder, the round's adapter merged into the previous version's
    weights (its answers are that adapter's on that model), and the next round trains a fresh adapter on it."""
    cfg, task, loop = setup
    prompt = task.eval_prompts(task.load("heldout")[2])[0]
    learner = OmegaConf.merge(cfg.learner, {"merge": True})
    trainer = PolicyTrainer(tiny_model, "float32", learner, str(tmp_path), torch_threads=2, seed=0)
    first = trainer.update([(prompt, " Tokyo Tokyo Tokyo")] * 4, version=1, seed=0)["policy"]
    assert first == Policy(1, str(tmp_path / "v1-model"), None)
    on_merged = BatchedEngine(load_model(first.model, "float32", "cpu"), load_tokenizer(first.model), cfg.inner,
                              cfg.task.max_answer_tokens, worker=0)
    on_merged.set_policy(1, None)
    loop.set_policy(1, str(tmp_path / "v1"))  # the round's adapter on the base model
    job = InnerJob("p1", 1, (), True, (prompt,), 1, None, None)
    [merged_out] = on_merged.run([job])
    assert merged_out.generations == loop.run(job).generations and "Tokyo" in merged_out.generations[0]
    loop.set_policy(0, None)

    second = trainer.update([(prompt, " Paris Paris Paris")] * 4, version=2, seed=0)["policy"]
    assert second == Policy(2, str(tmp_path / "v2-model"), None)
    adapter = json.loads((tmp_path / "v2" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == first.model  # round 2's adapter was trained on version 1
    on_merged = BatchedEngine(load_model(second.model, "float32", "cpu"), load_tokenizer(second.model), cfg.inner,
                              cfg.task.max_answer_tokens, worker=0)
    on_merged.set_policy(2, None)
    assert "Paris" in on_merged.run([dataclasses.replace(job, policy_version=2)])[0].generations[0]
