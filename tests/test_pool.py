"""The inner-loop pool on a local Ray cluster with logical GPUs: one worker per GPU, dynamic dispatch of K
jobs a lease, and a worker killed mid-run whose K leased jobs are all redone without duplicating any result."""

import os
import signal
from collections import Counter

import ray

from seal_dist.inner.pool import InnerPool
from seal_dist.tasks.knowledge.task import KnowledgeTask
from tests.conftest import fast_config


def test_one_worker_per_gpu_and_a_killed_worker_loses_nothing(ray_local, tmp_path, model_cache, tiny_model):
    # enough work that both workers are still holding leases when the first results come back (the board is
    # polled every 2 s; K jobs at a time finish fast)
    cfg = fast_config(tmp_path, model_cache, "inner.use_gpu=true", "inner.num_workers=2", "inner.epochs=30",
                      "inner.adapters_per_step=3")
    task = KnowledgeTask(cfg.task)
    contexts = task.load("train")[:36]
    jobs = [task.make_job(f"job-{i}", ctx, "1. A fact.\n2. Another fact.", 0, seed=i) for i, ctx in enumerate(contexts)]
    pool = InnerPool(cfg.inner, tiny_model, "float32", cfg.task.max_answer_tokens, 1, str(tmp_path / "train"),
                     max_failures=1)
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
