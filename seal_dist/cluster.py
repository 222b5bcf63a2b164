"""The distributed parts of a run and where they are placed: the Ray cluster, the sampler engines, the
inner-loop pool and the learner actor, behind the few calls the outer loop makes."""

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
from omegaconf import DictConfig

from seal_dist.config import ResourcesConfig, UserError
from seal_dist.inner.job import InnerJob, InnerResult
from seal_dist.inner.pool import InnerPool
from seal_dist.learner.sft import PolicyTrainer
from seal_dist.policy import Policy
from seal_dist.sampling.pool import SamplerPool
from seal_dist.sampling.screen import Sample


@contextlib.contextmanager
def ray_cluster(cfg: ResourcesConfig, logs: Path, verbose: bool) -> Iterator[None]:
    """Joins the configured cluster, or starts a private local one, for the duration of the block. The logs of
    the actors (sampler engines, inner-loop workers, learner) reach the console only when `verbose`; `logs`
    links to the folder Ray writes them to, and the console says so once."""
    if not verbose:  # "Token authentication is enabled" on every start: Ray's secure default, said in README
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    common = {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(cfg.torch_threads), "TOKENIZERS_PARALLELISM": "false"}},
              "log_to_driver": verbose, "logging_level": "INFO" if verbose else "WARNING"}
    if cfg.address is None:
        # The dashboard serves the state API that Ray Train's placement-group cleaner polls every second; without
        # it each poll fails and logs a warning (and the cleaner cannot do its job).
        context = ray.init(address="local", num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=True,
                           **common)
    else:
        context = ray.init(address=cfg.address, **common)
    if logs.is_symlink():
        logs.unlink()  # a resumed run's link to its earlier session
    logs.symlink_to(Path(context.address_info["session_dir"]) / "logs", target_is_directory=True)
    elsewhere = "" if cfg.address is None else " (this node's; other nodes keep theirs: `ray logs`)"
    print(f"engine and worker logs: {logs}{elsewhere}", flush=True)
    try:
        yield
    finally:
        ray.shutdown()


class Components:
    def __init__(self, cfg: DictConfig, model_path: str, policy_dir: str | None, policy: Policy):
        """Starts the sampler engines, the inner-loop pool (on the base model, `model_path`) and, given a
        policy_dir, the learner, each on the nodes that have its `resources.placement` resources, all of them
        on `policy` (version 0: the base model; a resumed run's policy otherwise)."""
        threads, dtype, placement = cfg.resources.torch_threads, cfg.model.dtype, cfg.resources.placement
        nodes = sum(node["Alive"] for node in ray.nodes())
        if nodes > 1 and cfg.resources.train_storage is None:
            raise UserError(f"the Ray cluster has {nodes} nodes: set resources.train_storage to storage every node "
                            "reaches (s3://bucket/path or a shared mount), where Ray Train keeps its run state")
        # the learner and the Train workers start in the background while the sampler's engines start
        self.learner = None if policy_dir is None else ray.remote(PolicyTrainer).options(
            num_gpus=cfg.learner.num_gpus, num_cpus=1, resources=dict(placement.learner)
        ).remote(policy.model, dtype, cfg.learner, policy_dir, threads, cfg.seed)
        storage = cfg.resources.train_storage or str(Path(cfg.run_dir).resolve() / "ray_train")
        self.pool = InnerPool(cfg.inner, model_path, dtype, cfg.task.max_answer_tokens, threads, storage,
                              max_failures=cfg.inner.max_failures, resources=dict(placement.inner))
        self.pool.publish_policy(policy)
        self.sampler = SamplerPool(cfg, policy)
        if self.learner is not None and policy.adapter is not None:
            ray.get(self.learner.restore.remote(policy.adapter))

    def publish(self, policy: Policy) -> None:
        """Makes `policy` the policy that samples self-edits and that inner-loop jobs update."""
        self.pool.publish_policy(policy)
        self.sampler.use_policy(policy)

    def sample(self, prompts: list[str], n: int, temperature: float, seed: int) -> list[list[Sample]]:
        """n self-edits per prompt from the current policy (see SamplerPool.sample)."""
        return self.sampler.sample(prompts, n, temperature, seed)

    def run_jobs(self, jobs: list[InnerJob], on_progress: Callable[[int], None]) -> Iterator[list[InnerResult]]:
        return self.pool.run(jobs, on_progress)

    def learn(self, examples: list[tuple[str, str]], version: int, seed: int) -> dict | None:
        """Fine-tunes the policy into `version`; None (no new version) when nothing was kept."""
        if not examples:
            return None
        return ray.get(self.learner.update.remote(examples, version, seed))

    def shutdown(self) -> None:
        self.pool.shutdown()
        self.sampler.shutdown()
        if self.learner is not None:
            ray.kill(self.learner)
