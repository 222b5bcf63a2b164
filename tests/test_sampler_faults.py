"""Sampler engines under RLlib's FaultTolerantActorManager, with real faults: an engine SIGKILLed while its
prompts are in flight is restarted by Ray, loads the current policy before it serves again, and the round's
self-edits are complete and the same as without the fault; an engine that keeps dying fails with its name."""

import os
import signal

import pytest

from seal_dist.learner.sft import PolicyTrainer
from seal_dist.policy import Policy
from seal_dist.sampling.pool import EngineFailed, SamplerPool
from tests.conftest import fast_config

PROMPTS = [f"Passage:\nTorvi Sal {i}\n" for i in range(4)]
TARGET = " owl owl owl owl"  # words of the tiny model's world


def engine_pid(pool: SamplerPool, engine: int) -> int:
    [result] = pool.manager.foreach_actor(lambda e: os.getpid(), remote_actor_ids=[engine])
    return result.get()


def kill_once(pid: int):
    """A progress callback that SIGKILLs the process the first time it is called (every share dispatched)."""
    killed = []

    def on_progress(done: int) -> None:
        if not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(done)
    return on_progress


def test_a_killed_engine_restarts_on_the_policy_and_its_prompts_are_sampled_again(tmp_path, tiny_model, ray_client,
                                                                                 vllm_config):
    cfg = vllm_config(tmp_path, "sampler.num_engines=2", "sampler.max_tokens=12", "learner.epochs=20",
                      "learner.lr=1e-2")
    policy = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path / "policy"), torch_threads=1, seed=0)
    update = policy.update([(p, TARGET) for p in PROMPTS] * 2, version=1, seed=0)
    pool = SamplerPool(cfg, Policy(0, tiny_model, None))
    try:
        base = pool.sample(PROMPTS, 1, 0.0, 0)
        pool.use_policy(update["policy"])
        greedy, sampled = pool.sample(PROMPTS, 1, 0.0, 0), pool.sample(PROMPTS, 2, 1.0, 7)
        assert greedy != base and all(g[0].text.split()[:3] == TARGET.split()[:3] for g in greedy)

        victim = engine_pid(pool, 1)
        again = pool.sample(PROMPTS, 2, 1.0, 7, on_progress=kill_once(victim))
        assert again == sampled  # complete, and seeded as without the fault
        assert pool.failures == {1: 1}

        pool.revive(wait=True)
        assert pool.manager.healthy_actor_ids() == [0, 1] and engine_pid(pool, 1) != victim
        [restarted] = pool.manager.foreach_actor("generate", remote_actor_ids=[1], kwargs={
            "prompts": PROMPTS, "n": 1, "temperature": 0.0, "seed": 0, "version": 1})
        assert restarted.get() == greedy  # the current policy's output, not the base model's
    finally:
        pool.shutdown()


def test_an_engine_that_dies_past_its_restarts_fails_with_its_name(tmp_path, model_cache, tiny_model, ray_client):
    cfg = fast_config(tmp_path, model_cache, "sampler.max_tokens=4", "sampler.max_restarts=0")
    pool = SamplerPool(cfg, Policy(0, tiny_model, None))
    try:
        with pytest.raises(EngineFailed, match=r"sampler engine 0 failed 1 times \(sampler.max_restarts=0\)"):
            pool.sample(PROMPTS, 1, 0.0, 0, on_progress=kill_once(engine_pid(pool, 0)))
    finally:
        pool.shutdown()
