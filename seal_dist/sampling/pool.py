"""The sampler pool: the self-edit engines as Ray actors under RLlib's FaultTolerantActorManager, and their
faults.

An engine that dies (or whose call raises) is taken out of service. Ray restarts its actor
(`sampler.max_restarts`); a restarted engine answers a ping, then loads the current policy, and only then is
it healthy again (a restarted engine has no adapter, and serving the base model in its place is the silent
bug this rules out). The prompts it was sampling go to a healthy engine with the same seeds, so a round's
self-edits are the ones it would have had without the fault. An engine that fails more than
`sampler.max_restarts` times fails the call with an error that names it.

A policy on another model folder (a merged version, `learner.merge`) replaces the engines by new ones started
on that folder.
"""

from collections import Counter, deque
from collections.abc import Callable

import ray
from omegaconf import DictConfig
from ray.rllib.utils.actor_manager import FaultTolerantActorManager

from seal_dist.config import Engine
from seal_dist.policy import Policy
from seal_dist.sampling.engines import HFEngine, VLLMEngine
from seal_dist.sampling.screen import Sample


class EngineFailed(RuntimeError):
    pass


def start_engine(cfg: DictConfig, model_path: str) -> ray.actor.ActorHandle:
    """One sampler engine (vLLM or transformers) as a Ray actor that Ray restarts when it dies, on a node with
    the `resources.placement.sampler` resources."""
    engine = {Engine.vllm: VLLMEngine, Engine.hf: HFEngine}[cfg.sampler.engine]
    return ray.remote(engine).options(
        num_gpus=cfg.sampler.gpus_per_engine, num_cpus=1, resources=dict(cfg.resources.placement.sampler),
        max_restarts=cfg.sampler.max_restarts, max_task_retries=0, runtime_env={"env_vars": dict(cfg.sampler.env_vars)},
    ).remote(model_path, cfg.sampler, cfg.model.dtype, cfg.resources.torch_threads)


def _answers(ping: ray.ObjectRef) -> bool:
    try:
        ray.get(ping)
    except ray.exceptions.RayActorError:
        return False
    return True


class SamplerPool:
    def __init__(self, cfg: DictConfig, policy: Policy):
        """Engines serving `policy`."""
        self.cfg, self.max_restarts = cfg, cfg.sampler.max_restarts
        self._start(policy.model)
        self.use_policy(policy)

    def _start(self, model_path: str) -> None:
        # engine i is the manager's actor i
        self.engines = [start_engine(self.cfg, model_path) for _ in range(self.cfg.sampler.num_engines)]
        # one call in flight per engine: the pool knows which prompts each engine holds
        self.manager = FaultTolerantActorManager(self.engines, max_remote_requests_in_flight_per_actor=1)
        self.model_path, self.failures = model_path, Counter()  # failures: engine id -> calls lost to its faults

    def use_policy(self, policy: Policy) -> None:
        """Makes `policy` what every engine serves (engines on another model folder are replaced first)."""
        if policy.model != self.model_path:
            self.manager.clear()  # kills them: their resources go to the new engines
            self._start(policy.model)
        self.policy = policy
        results = self.manager.foreach_actor("load_policy", kwargs={"policy": policy}, healthy_only=False)
        for result in results:
            self.manager.set_actor_state(result.actor_id, healthy=result.ok)
            if not result.ok:
                self._failed(result.actor_id, result.get())

    def sample(self, prompts: list[str], n: int, temperature: float, seed: int,
               on_progress: Callable[[int], None] = lambda done: None) -> list[list[Sample]]:
        """n self-edits per prompt from the current policy, the prompts split into one share per engine; a
        share lost to an engine's fault is sampled again by another. `on_progress(prompts done)` is called
        once every share is dispatched and after each one finishes."""
        engines = self.manager.num_actors()
        todo = deque(share for share in (list(range(i, len(prompts), engines)) for i in range(engines)) if share)
        held: dict[int, list[int]] = {}  # engine id -> the share it is sampling
        out: list[list[Sample] | None] = [None] * len(prompts)
        while todo or held:
            self.revive(wait=not held and not self.manager.healthy_actor_ids())
            for engine in self.manager.healthy_actor_ids():
                if todo and engine not in held:
                    held[engine] = share = todo.popleft()
                    kwargs = {"prompts": [prompts[i] for i in share], "n": n, "temperature": temperature,
                              "seed": seed, "version": self.policy.version}
                    if self.manager.foreach_actor_async("generate", kwargs=kwargs, remote_actor_ids=[engine]) != 1:
                        raise RuntimeError(f"sampler engine {engine} refused a call")  # never: one in flight
            on_progress(sum(o is not None for o in out))
            for result in self.manager.fetch_ready_async_reqs(timeout_seconds=None if held else 0.0):
                share = held.pop(result.actor_id)
                if result.ok:
                    for i, samples in zip(share, result.get()):
                        out[i] = [Sample(*s) for s in samples]
                else:
                    todo.append(share)
                    self._failed(result.actor_id, result.get())
            # an engine taken out of service by another call loses its call in flight without a result
            for engine in [e for e in held if not self.manager.is_actor_healthy(e)]:
                todo.append(held.pop(engine))
        on_progress(len(prompts))
        return out

    def revive(self, wait: bool) -> None:
        """Brings restarted engines back: each loads the current policy before it is marked healthy. `wait`:
        until every engine out of service has restarted (or is dead for good: then this raises)."""
        if wait:
            down = [e for e in self.manager.actor_ids() if not self.manager.is_actor_healthy(e)]
            # a ping that may be retried is held by Ray until its restarting actor is up again
            pings = [self.engines[e].ping.options(max_task_retries=-1).remote() for e in down]
            dead = [e for e, ping in zip(down, pings) if not _answers(ping)]
            if dead:
                raise EngineFailed(f"sampler engines {dead} did not restart (sampler.max_restarts={self.max_restarts})")
        back = self.manager.probe_unhealthy_actors(timeout_seconds=None if wait else 0.0)
        for engine in back:
            [result] = self.manager.foreach_actor("load_policy", kwargs={"policy": self.policy},
                                                  remote_actor_ids=[engine], healthy_only=False)
            if result.ok:
                self.manager.set_actor_state(engine, healthy=True)
            else:
                self._failed(engine, result.get())

    def _failed(self, engine: int, error: BaseException) -> None:
        self.failures[engine] += 1
        if self.failures[engine] > self.max_restarts:
            raise EngineFailed(f"sampler engine {engine} failed {self.failures[engine]} times "
                               f"(sampler.max_restarts={self.max_restarts}); last error: {error}") from error

    def shutdown(self) -> None:
        self.manager.clear()
