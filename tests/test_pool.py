"""The inner-loop pool on a local Ray cluster with logical GPUs: one worker per GPU, dynamic dispatch of K
jobs a lease, a worker killed mid-run whose K leased jobs are all redone without duplicating any result,
poison jobs (one that raises, one whose worker keeps dying) quarantined after their retries, and workers that
reload a policy published on another model folder (learner.merge)."""

import dataclasses
import os
import signal
from collections import Counter

import ray

from seal_dist.example import Example
from seal_dist.inner.board import JobBoard
from seal_dist.inner.job import InnerJob, InnerResult
from seal_dist.inner.pool import InnerPool
from seal_dist.learner.sft import PolicyTrainer
from seal_dist.models import load_model, load_tokenizer
from seal_dist.policy import Policy
from seal_dist.tasks.knowledge.task import KnowledgeTask
from seal_dist.training import generate
from tests.conftest import fast_config


def test_one_worker_per_gpu_and_a_killed_worker_loses_nothing(ray_client, tmp_path, model_cache, tiny_model):
    # enough work that both workers are still holding leases when the first results come back (the board is
    # polled every 2 s; K jobs at a time finish fast)
    cfg = fast_config(tmp_path, model_cache, "inner.use_gpu=true", "inner.num_workers=2", "inner.epochs=30",
                      "inner.adapters_per_step=3")
    task = KnowledgeTask(cfg.task)
    contexts = task.load("train")[:36]
    jobs = [task.make_job(f"job-{i}", ctx, "1. A fact.\n2. Another fact.", 0, seed=i) for i, ctx in enumerate(contexts)]
    pool = InnerPool(cfg.inner, tiny_model, "float32", cfg.task.max_answer_tokens, 1, str(tmp_path / "train"),
                     max_failures=1, resources={})
    results, killed = [], None
    for batch in pool.run(jobs, on_progress=lambda done: None):
        results += batch
        if killed is None:
            workers = ray.get(pool.board.workers.remote())
            assert sorted(w["gpu_ids"][0] for w in workers.values()) == [0, 1]  # one logical GPU each
            leases = ray.get(pool.board.leases.remote())
            victim, held = Counter(leases.values()).most_common(1)[0]  # a worker in the middle of its K jobs
            assert held == 3
            killed = {"rank": victim, "jobs": [j for j, w in leases.items() if w == victim], **workers[victim]}
            os.kill(killed["pid"], signal.SIGKILL)  # a real worker death, mid-job
    after = ray.get(pool.board.workers.remote())
    pool.shutdown()
    assert sorted(r.job_id for r in results) == sorted(j.job_id for j in jobs)  # each exactly once
    assert all(r.error is None for r in results) and set(killed["jobs"]) <= {r.job_id for r in results}
    restarted = after[killed["rank"]]
    assert restarted["generation"] == killed["generation"] + 1 and restarted["pid"] != killed["pid"]
    assert all(len(r.generations) == len(ctx.questions) for r, ctx in
               zip(sorted(results, key=lambda r: int(r.job_id.split("-")[1])), contexts))


def test_a_poison_job_is_quarantined_after_its_retries_and_the_others_are_intact(ray_client, tmp_path, model_cache,
                                                                                tiny_model):
    cfg = fast_config(tmp_path, model_cache, "inner.num_workers=1", "inner.adapters_per_step=4", "inner.job_retries=2")
    task = KnowledgeTask(cfg.task)
    contexts = task.load("train")[:6]
    jobs = [task.make_job(f"job-{i}", ctx, "1. A fact.\n2. Another fact.", 0, seed=i) for i, ctx in enumerate(contexts)]
    jobs[1] = dataclasses.replace(jobs[1], seed=2**70)  # a real fault: torch cannot seed the adapter from it
    pool = InnerPool(cfg.inner, tiny_model, "float32", cfg.task.max_answer_tokens, 1, str(tmp_path / "train"),
                     max_failures=0, resources={})
    results = {r.job_id: r for batch in pool.run(jobs, on_progress=lambda done: None) for r in batch}
    pool.shutdown()
    assert sorted(results) == sorted(j.job_id for j in jobs)
    poison = results.pop("job-1")
    assert poison.attempts == 3 and poison.generations == () and poison.error.startswith("ValueError: ")
    assert all(r.error is None and r.attempts == 1 for r in results.values())  # its batch-mates were run again alone
    assert all(len(results[f"job-{i}"].generations) == len(contexts[i].questions) for i in (0, 2, 3, 4, 5))


def test_a_job_whose_worker_keeps_dying_is_recorded_failed_and_its_lease_mates_run_alone(ray_client):
    job = lambda i: InnerJob(f"job-{i}", 0, (Example("Q\n", "A"),), False, ("Q\n",), i, None, None)  # noqa: E731
    board = JobBoard.remote(1)
    ray.get(board.publish_policy.remote(Policy(0, "/base", None)))
    ray.get(board.put.remote([job(0), job(1)]))
    generation = ray.get(board.register.remote(0, {}))
    leased, _ = ray.get(board.lease.remote(0, generation, 4))
    assert [j.job_id for j in leased] == ["job-0", "job-1"]
    generation = ray.get(board.register.remote(0, {}))  # the worker died holding both: each runs again, alone
    [first], _ = ray.get(board.lease.remote(0, generation, 4))
    ray.get(board.complete.remote([InnerResult(first.job_id, ("a",), None, None, 0.0, 0.0, 0, None)]))
    [second], _ = ray.get(board.lease.remote(0, generation, 4))
    generation = ray.get(board.register.remote(0, {}))  # and again, holding the other: no retries left
    results = {r.job_id: r for r in ray.get(board.take.remote(["job-0", "job-1"]))}
    assert results[first.job_id].error is None and results[first.job_id].attempts == 2
    assert results[second.job_id].error == "its worker died in each of 2 runs" and results[second.job_id].attempts == 2
    ray.get(board.close.remote())


def test_workers_reload_a_policy_published_on_another_model_folder(ray_client, tmp_path, model_cache, tiny_model):
    cfg = fast_config(tmp_path, model_cache, "inner.num_workers=1", "learner.merge=true", "learner.epochs=10",
                      "learner.lr=1e-2")
    task = KnowledgeTask(cfg.task)
    ctx = task.load("heldout")[0]
    prompts = task.eval_prompts(ctx)
    trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path / "policy"), torch_threads=1, seed=0)
    merged = trainer.update([(p, " Tokyo Tokyo Tokyo") for p in prompts] * 2, version=1, seed=0)["policy"]
    expected = generate(load_model(merged.model, "float32", "cpu"), load_tokenizer(merged.model), list(prompts),
                        cfg.task.max_answer_tokens, len(prompts), 0.0, 1.0)
    pool = InnerPool(cfg.inner, tiny_model, "float32", cfg.task.max_answer_tokens, 1, str(tmp_path / "train"),
                     max_failures=0, resources={})

    def answers(version: int) -> tuple[str, ...]:
        [[result]] = list(pool.run([task.make_job(f"v{version}-{len(seen)}", ctx, None, version, seed=0)],
                                   on_progress=lambda done: None))
        seen.append(result.generations)
        return result.generations

    seen = []
    try:
        base = answers(0)
        pool.publish_policy(merged)
        on_merged = answers(1)
        assert answers(0) == base  # and back on the base model for a version-0 job
    finally:
        pool.shutdown()
    assert list(on_merged) == expected and on_merged != base and "Tokyo" in on_merged[0]
