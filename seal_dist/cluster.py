"""The distributed parts of a run and where they are placed: the Ray cluster, the sampler engines, the
inner-loop pool and the learner actor, behind the few calls the outer loop makes."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
from omegaconf import DictConfig

from seal_dist.config import Engine, ResourcesConfig
from seal_dist.inner.job import InnerJob, InnerResult
from seal_dist.inner.pool import InnerPool
from seal_dist.learner.sft import PolicyTrainer
from seal_dist.sampling.engines import HFEngine, VLLMEngine


@contextlib.contextmanager
def ray_cluster(cfg: ResourcesConfig) -> Iterator[None]:
    """Joins the configured cluster, or starts a private local one, for the duration of the block."""
    env = {"env_vars": {"OMP_NUM_THREADS": str(cfg.torch_threads), "TOKENIZERS_PARALLELISM": "false"}}
    if cfg.address is None:
        # The dashboard serves the state API that Ray Train's placement-group cleaner polls every second; without
        # it each poll fails and logs a warning (and the cleaner cannot do its job).
        ray.init(address="local", num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=True, runtime_env=env)
    else:
        ray.init(address=cfg.address, runtime_env=env)
    try:
        yield
    finally:
        ray.shutdown()


class Components:
    def __init__(self, cfg: DictConfig, model_path: str, policy_dir: str | None):
        """Starts the sampler engines, the inner-loop pool and, given a policy_dir, the learner."""
        threads, dtype = cfg.resources.torch_threads, cfg.model.dtype
        self.engines = [self.start_engine(cfg, model_path) for _ in range(cfg.sampler.num_engines)]
        self.learner = None if policy_dir is None else ray.remote(PolicyTrainer).options(
            num_gpus=cfg.learner.num_gpus, num_cpus=1
        ).remote(model_path, dtype, cfg.learner, policy_dir, threads, cfg.seed)
        storage = cfg.resources.train_storage or str(Path(cfg.run_dir).resolve() / "ray_train")
        self.pool = InnerPool(cfg.inner, model_path, dtype, cfg.task.max_answer_tokens, threads, storage,
                              max_failures=cfg.inner.max_failures)
        self.adapter: tuple[int, str] | None = None

    @staticmethod
    def start_engine(cfg: DictConfig, model_path: str) -> ray.actor.ActorHandle:
        """One sampler engine (vLLM or transformers) as a Ray actor."""
        engine = {Engine.vllm: VLLMEngine, Engine.hf: HFEngine}[cfg.sampler.engine]
        return ray.remote(engine).options(
            num_gpus=cfg.sampler.gpus_per_engine, num_cpus=1, runtime_env={"env_vars": dict(cfg.sampler.env_vars)}
        ).remote(model_path, cfg.sampler, cfg.model.dtype, cfg.resources.torch_threads)

    @classmethod
    def start(cls, cfg: DictConfig, model_path: str, policy_dir: str, version: int, adapter_path: str | None):
        parts = cls(cfg, model_path, policy_dir)
        if adapter_path is not None:
            ray.get(parts.learner.restore.remote(version))
        parts.publish(version, adapter_path)
        return parts

    def publish(self, version: int, adapter_path: str | None) -> None:
        """Makes `version` the policy that samples self-edits and that inner-loop jobs update."""
        self.pool.publish_policy(version, adapter_path)
        self.use_sampler_policy(version, adapter_path)

    def use_sampler_policy(self, version: int, adapter_path: str | None) -> None:
        """Makes `version` the policy that samples self-edits (older adapters are unloaded)."""
        self.adapter = None if adapter_path is None else (version, adapter_path)
        ray.get([e.drop_adapters.remote(version) for e in self.engines])

    def sample(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        """n self-edits per prompt, the prompts split evenly over the engines."""
        shards = [prompts[i :: len(self.engines)] for i in range(len(self.engines))]
        outs = ray.get([e.generate.remote(s, n, temperature, seed, self.adapter) for e, s in zip(self.engines, shards)])
        merged = [None] * len(prompts)
        for i, out in enumerate(outs):
            merged[i :: len(self.engines)] = out
        return merged

    def run_jobs(self, jobs: list[InnerJob], on_progress: Callable[[int], None]) -> Iterator[list[InnerResult]]:
        return self.pool.run(jobs, on_progress)

    def learn(self, examples: list[tuple[str, str]], version: int, seed: int) -> dict | None:
        """Fine-tunes the policy into `version`; None (no new version) when nothing was kept."""
        if not examples:
            return None
        return ray.get(self.learner.update.remote(examples, version, seed))

    def shutdown(self) -> None:
        self.pool.shutdown()
        for handle in (*self.engines, *([self.learner] if self.learner else [])):
            ray.kill(handle)
