"""The inner-loop pool: one Ray Train worker group, started once per run, whose workers keep the policy
model resident and pull jobs from the job board until it closes."""

import gc
import os
import threading
from collections.abc import Callable, Iterator

import ray
import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer, get_device

from seal_dist.config import InnerEngineKind
from seal_dist.inner.board import JobBoard
from seal_dist.inner.job import InnerJob, InnerResult
from seal_dist.policy import Policy


def worker_loop(config: dict) -> None:
    """Runs on every Train worker: lease up to K jobs, switch to their policy version if needed (loading its
    model folder if it is another one: a merged version), run them together, report."""
    import torch

    from seal_dist.inner.batched import BatchedEngine
    from seal_dist.inner.engine import run_isolating_failures
    from seal_dist.inner.sequential import FullEngine, SequentialEngine
    from seal_dist.models import load_model, load_tokenizer

    torch.set_num_threads(config["torch_threads"])
    rank, board, inner = ray.train.get_context().get_world_rank(), config["board"], config["inner"]
    device = str(get_device()) if torch.cuda.is_available() else "cpu"  # logical GPUs on a CPU machine
    engine_class = {InnerEngineKind.batched: BatchedEngine, InnerEngineKind.sequential: SequentialEngine,
                    InnerEngineKind.full: FullEngine}[inner.engine]

    def engine_on(model_path: str):
        return engine_class(load_model(model_path, config["dtype"], device), load_tokenizer(model_path), inner,
                            config["max_answer_tokens"], rank)

    engine, model_path = engine_on(config["model_path"]), config["model_path"]
    info = {"pid": os.getpid(), "gpu_ids": ray.get_gpu_ids(), "device": device, "node": ray.get_runtime_context().get_node_id()}
    generation = ray.get(board.register.remote(rank, info))  # requeues what a previous incarnation had leased
    while (lease := ray.get(board.lease.remote(rank, generation, inner.adapters_per_step))) is not None:
        jobs, policy = lease
        if policy.model != model_path:
            engine = None  # the old model's memory is freed before the new one loads
            gc.collect()
            engine, model_path = engine_on(policy.model), policy.model
        engine.set_policy(policy.version, policy.adapter)
        ray.get(board.complete.remote(run_isolating_failures(engine, jobs, rank)))


class InnerPool:
    def __init__(self, inner_cfg, model_path: str, dtype: str, max_answer_tokens: int, torch_threads: int,
                 storage_path: str, max_failures: int, resources: dict[str, float]):
        """`resources`: custom Ray resources per worker (the nodes it may run on), besides its GPU or CPU."""
        self.board = JobBoard.remote(inner_cfg.job_retries)
        self.publish_policy(Policy(0, model_path, None))  # version 0: the base model
        trainer = TorchTrainer(
            worker_loop,
            train_loop_config={"board": self.board, "model_path": model_path, "dtype": dtype, "inner": inner_cfg,
                               "max_answer_tokens": max_answer_tokens, "torch_threads": torch_threads},
            scaling_config=ScalingConfig(num_workers=inner_cfg.num_workers, use_gpu=inner_cfg.use_gpu,
                                         resources_per_worker={("GPU" if inner_cfg.use_gpu else "CPU"): 1, **resources}),
            torch_config=TorchConfig(backend="gloo"),  # workers never communicate; gloo runs everywhere
            run_config=RunConfig(name="inner-pool", storage_path=storage_path,
                                 failure_config=FailureConfig(max_failures=max_failures)),
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fit, args=(trainer,), daemon=True, name="inner-pool")
        self._thread.start()  # fit() blocks for the whole run

    def _fit(self, trainer: TorchTrainer) -> None:
        try:
            trainer.fit()
        except BaseException as e:  # surfaced to the driver by run()
            self._error = e

    def publish_policy(self, policy: Policy) -> None:
        ray.get(self.board.publish_policy.remote(policy))

    def run(self, jobs: list[InnerJob], on_progress: Callable[[int], None]) -> Iterator[list[InnerResult]]:
        """Submits the jobs and yields their results in batches as they finish."""
        ids = [j.job_id for j in jobs]
        ray.get(self.board.put.remote(jobs))
        taken = 0
        while taken < len(ids):
            done = ray.get(self.board.wait.remote(ids, 2.0))
            if not self._thread.is_alive():
                raise RuntimeError("the inner-loop worker group stopped") from self._error
            on_progress(done)
            results = ray.get(self.board.take.remote(ids))
            taken += len(results)
            if results:
                yield results

    def shutdown(self) -> None:
        ray.get(self.board.close.remote())
        self._thread.join()
