"""The batched inner-loop engine against K separate runs of the sequential (PEFT) engine: in float64 with
eager attention the final adapter weights agree to 1e-6 relative, the losses to 1e-9 and the greedy answers
are identical, for jobs of different
lengths, learning rates, epochs and loss masks, on the base model and on a policy adapter; a job that
diverges fails alone and the others' results are kept."""

import math

import peft
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from seal_dist.example import Example
from seal_dist.inner.batched import BatchedEngine
from seal_dist.inner.engine import run_isolating_failures
from seal_dist.inner.job import InnerJob
from seal_dist.inner.sequential import INNER, FullEngine, SequentialEngine
from seal_dist.models import load_tokenizer
from seal_dist.tasks.knowledge.task import KnowledgeTask
from seal_dist.training import NO_LOSS, encode, lora_config, lr_factor
from tests.conftest import fast_config

ALL_PROJECTIONS = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_cache, tiny_model):
    torch.set_num_threads(2)
    cfg = fast_config(tmp_path_factory.mktemp("batched"), model_cache, "inner.lora.r=4", "inner.lora.alpha=8",
                      f"inner.lora.target_modules={ALL_PROJECTIONS}", "inner.batch_size=2", "inner.epochs=2",
                      "inner.lr=1e-2", "inner.adapters_per_step=5", "inner.eval_batch_size=6")
    return cfg, KnowledgeTask(cfg.task), load_tokenizer(tiny_model)


def model(path: str, dtype: torch.dtype):
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager")


def jobs_of_every_shape(task, version: int = 0) -> list[InnerJob]:
    """Five jobs: a baseline (no update), and updates of 1 to 5 examples with their own lr, epochs and loss
    masks, so that they finish after different numbers of steps (odd counts leave a short last batch)."""
    ctxs = task.load("heldout")[:5]
    prompts = [task.eval_prompts(c) for c in ctxs]
    whole = [Example("", f"{p} {q.answer}.") for p, q in zip(prompts[1], ctxs[1].questions)]
    pairs = [Example(p, f" {q.answer}.") for p, q in zip(prompts[2], ctxs[2].questions)]
    return [
        InnerJob("baseline", version, (), True, prompts[0], 11, None, None),
        InnerJob("long", version, tuple(whole[:5]), True, prompts[1], 12, None, None),  # inner.lr, 2 epochs
        InnerJob("pairs", version, tuple(pairs[:3]), False, prompts[2][:2], 13, 3e-2, 3),  # completion-only loss
        InnerJob("one", version, tuple(whole[:1]), True, prompts[3], 14, 5e-3, 1),
        InnerJob("zero-epochs", version, tuple(whole[:2]), True, prompts[4], 15, None, 0),
    ]


def sequential_weights(engine: SequentialEngine) -> list[torch.Tensor]:
    return [t.detach().clone() for m in engine.model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)
            for t in (m.lora_A[INNER].weight, m.lora_B[INNER].weight)]


def batched_weights(engine: BatchedEngine, i: int) -> list[torch.Tensor]:
    return [t[i].detach().clone() for layer in engine.layers for t in (layer.A, layer.B)]


def compare(cfg, tokenizer, path, jobs, policy: str | None):
    sequential = SequentialEngine(model(path, torch.float64), tokenizer, cfg.inner, cfg.task.max_answer_tokens, 0)
    batched = BatchedEngine(model(path, torch.float64), tokenizer, cfg.inner, cfg.task.max_answer_tokens, 0)
    if policy is not None:
        sequential.set_policy(1, policy)
        batched.set_policy(1, policy)
    expected = []
    for job in jobs:
        expected.append((sequential.run([job])[0], sequential_weights(sequential)))
    results = batched.run(jobs)
    assert [r.job_id for r in results] == [j.job_id for j in jobs]
    for i, (result, (want, weights)) in enumerate(zip(results, expected)):
        assert result.error is None and result.generations == want.generations, result.job_id
        for key in ("loss_before", "loss_after"):
            got, ref = getattr(result, key), getattr(want, key)
            assert (got is None) == (ref is None) and (ref is None or got == pytest.approx(ref, rel=1e-9)), key
        for got, ref in zip(batched_weights(batched, i), weights, strict=True):
            assert (got - ref).norm() <= 1e-6 * max(ref.norm(), 1e-12), result.job_id
    return results


def test_batched_engine_equals_sequential_runs(setup, tiny_model):
    cfg, task, tokenizer = setup
    results = compare(cfg, tokenizer, tiny_model, jobs_of_every_shape(task), policy=None)
    by_id = {r.job_id: r for r in results}
    assert by_id["baseline"].loss_before is None and by_id["zero-epochs"].loss_after is None
    assert by_id["long"].loss_after < by_id["long"].loss_before  # the updates really trained


def test_batched_engine_equals_sequential_runs_under_a_cosine_schedule_with_warm_up(setup, tiny_model):
    cfg, task, tokenizer = setup
    cosine = OmegaConf.merge(cfg, {"inner": {"schedule": "cosine", "warmup_steps": 2}})  # ARC's schedule
    compare(cosine, tokenizer, tiny_model, jobs_of_every_shape(task), policy=None)


def test_the_reference_padding_trains_on_eos_to_the_padded_length(setup, tiny_model):
    cfg, task, tokenizer = setup
    eos, text = tokenizer.eos_token_id, Example("Topic: A\n", "A was born in B.")
    ids, labels = encode(tokenizer, text, 256, loss_on_prompt=True)
    padded_ids, padded_labels = encode(tokenizer, text, 256, loss_on_prompt=True, pad_to=40)
    assert len(padded_ids) == len(padded_labels) == 40 and padded_ids[: len(ids)] == ids
    assert padded_ids[len(ids):] == padded_labels[len(ids):] == [eos] * (40 - len(ids))  # loss on the padding
    assert encode(tokenizer, text, 24, True, pad_to=40)[1] == padded_labels[:24]  # max_seq_len still cuts
    assert encode(tokenizer, text, 256, False, pad_to=40)[1][: len(ids)].count(NO_LOSS) > 0  # the prompt's mask stays
    padded = OmegaConf.merge(cfg, {"inner": {"pad_to": 48}})
    results = compare(padded, tokenizer, tiny_model, jobs_of_every_shape(task), policy=None)
    plain = {r.job_id: r for r in compare(cfg, tokenizer, tiny_model, jobs_of_every_shape(task)[1:2], policy=None)}
    assert results[1].loss_before != pytest.approx(plain["long"].loss_before)  # the padding's tokens count


def test_learning_rate_schedules():
    assert [lr_factor(s, 4, "linear", 0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = [lr_factor(s, 6, "cosine", 2) for s in range(6)]  # 2 warm-up steps, then 4 of decay
    assert cosine[:3] == [0.0, 0.5, 1.0] and cosine[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine[5] == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))


def test_batched_engine_equals_sequential_runs_on_a_policy_adapter(setup, tiny_model, tmp_path):
    cfg, task, tokenizer = setup
    torch.manual_seed(0)
    policy_cfg = lora_config(cfg.learner.lora)
    policy_cfg.init_lora_weights = False  # a non-zero adapter, so the policy differs from the base model
    policy_cfg.target_modules = {"q_proj", "v_proj", "down_proj"}  # some layers with both adapters, some not
    peft.get_peft_model(model(tiny_model, torch.float64), policy_cfg).save_pretrained(str(tmp_path / "policy"))
    compare(cfg, tokenizer, tiny_model, jobs_of_every_shape(task, version=1), policy=str(tmp_path / "policy"))


def test_a_diverging_job_fails_alone_and_the_others_are_kept(setup, tiny_model):
    cfg, task, tokenizer = setup
    jobs = jobs_of_every_shape(task)[1:4]
    diverging = InnerJob("diverging", 0, jobs[0].examples, True, jobs[0].eval_prompts, 16, 1e38, 2)
    engine = BatchedEngine(model(tiny_model, torch.float32), tokenizer, cfg.inner, cfg.task.max_answer_tokens, 0)
    alone = engine.run(jobs)
    results = run_isolating_failures(engine, [jobs[0], diverging, *jobs[1:]], worker=0)
    assert [r.job_id for r in results] == ["long", "diverging", "pairs", "one"]
    bad = results[1]
    assert bad.error.startswith("non-finite") and bad.generations == ()
    for want, got in zip(alone, [results[0], *results[2:]]):
        assert got.error is None and got.generations == want.generations
        assert got.loss_after == pytest.approx(want.loss_after, rel=1e-5)


def test_the_full_engine_trains_every_weight_from_the_policy_model_each_time(setup, tiny_model, tmp_path):
    """Continued pretraining's engine: a job trains every weight; the next starts from the policy's weights
    again; a policy adapter is merged into them (its answers are the adapter engine's on that policy)."""
    cfg, task, tokenizer = setup
    inner = OmegaConf.merge(cfg.inner, {"lr": 1e-3})
    baseline, long = jobs_of_every_shape(task)[:2]
    full = FullEngine(model(tiny_model, torch.float32), tokenizer, inner, cfg.task.max_answer_tokens, 0)
    before = {name: t.clone() for name, t in full.model.named_parameters()}
    first = full.run([baseline, long])
    assert all(not torch.equal(t, before[name]) for name, t in full.model.named_parameters())  # every weight moved
    assert first[1].loss_after < first[1].loss_before
    again = full.run([baseline, long])
    assert [r.generations for r in again] == [r.generations for r in first]
    assert again[1].loss_after == pytest.approx(first[1].loss_after, rel=1e-5)
    adapters = SequentialEngine(model(tiny_model, torch.float32), tokenizer, inner, cfg.task.max_answer_tokens, 0)
    assert first[0].generations == adapters.run([baseline])[0].generations  # the base model answers alike
    torch.manual_seed(0)
    policy_cfg = lora_config(cfg.learner.lora)
    policy_cfg.init_lora_weights = False  # a non-zero adapter: the policy differs from the base model
    peft.get_peft_model(model(tiny_model, torch.float32), policy_cfg).save_pretrained(str(tmp_path / "policy"))
    on_policy = jobs_of_every_shape(task, version=1)[0]
    for engine in (full, adapters):
        engine.set_policy(1, str(tmp_path / "policy"))
    merged, stacked = full.run([on_policy])[0], adapters.run([on_policy])[0]
    assert merged.generations == stacked.generations != first[0].generations


class OutOfMemoryAbove:
    """A real engine that runs out of memory (injected: CPU tests cannot exhaust a device) on batches of
    more than `limit` jobs, and on the job `hopeless` whatever the batch."""

    def __init__(self, engine: BatchedEngine, limit: int, hopeless: str):
        self.engine, self.limit, self.hopeless, self.policy_version = engine, limit, hopeless, 0

    def run(self, jobs):
        if len(jobs) > self.limit or any(j.job_id == self.hopeless for j in jobs):
            raise torch.OutOfMemoryError("injected: no memory for this batch")
        return self.engine.run(jobs)


def test_out_of_memory_in_a_batch_reruns_its_jobs_alone(setup, tiny_model):
    cfg, task, tokenizer = setup
    jobs = jobs_of_every_shape(task)[:4]
    engine = BatchedEngine(model(tiny_model, torch.float32), tokenizer, cfg.inner, cfg.task.max_answer_tokens, 0)
    alone = [engine.run([job])[0] for job in jobs]
    results = run_isolating_failures(OutOfMemoryAbove(engine, limit=1, hopeless="pairs"), jobs, worker=0)
    assert [r.job_id for r in results] == [j.job_id for j in jobs]
    assert results[2].error.startswith("out of memory: injected") and results[2].generations == ()
    for want, got in zip(alone[:2] + alone[3:], results[:2] + results[3:]):
        assert got.error is None and got.generations == want.generations
