"""Inner-loop throughput, side by side in one run: the sequential engine in this process (one job at a time,
as the reference implementation) against the Ray Train pool (its configured engine, inner.engine and
inner.adapters_per_step) with 1 and with N workers, on the same jobs.

    .venv/bin/python benchmarks/inner_throughput.py [--jobs 24] [--workers 2] [hydra overrides...]

Prints jobs per second and the ratios to the in-process baseline. Defaults to the CPU demo's settings.
"""

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from seal_dist import config, models
from seal_dist.cluster import ray_cluster
from seal_dist.inner.sequential import SequentialEngine
from seal_dist.inner.pool import InnerPool
from seal_dist.tasks.knowledge.task import KnowledgeTask
from seal_dist.train import CONF_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    args, overrides = parser.parse_known_args()
    config.register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=demo_cpu", "run_dir=runs/benchmark", *overrides])
    task = KnowledgeTask(cfg.task)
    model_path = models.resolve_path(cfg.model, task)
    contexts = task.load("train")[: args.jobs]
    jobs = [task.make_job(f"b{i}", c, f"1. {c.text}", 0, seed=i) for i, c in enumerate(contexts)]

    torch.set_num_threads(cfg.resources.torch_threads)
    engine = SequentialEngine(models.load_model(model_path, cfg.model.dtype, "cpu"), models.load_tokenizer(model_path),
                              cfg.inner, cfg.task.max_answer_tokens, worker=0)
    start = time.perf_counter()
    engine.run(jobs)
    rates = {"in-process, 1 at a time": len(jobs) / (time.perf_counter() - start)}

    with ray_cluster(cfg.resources, Path(tempfile.mkdtemp(prefix="seal-bench-")) / "logs", verbose=False):
        for workers in sorted({1, args.workers}):
            cfg.inner.num_workers = workers
            pool = InnerPool(cfg.inner, model_path, cfg.model.dtype, cfg.task.max_answer_tokens,
                             cfg.resources.torch_threads, tempfile.mkdtemp(prefix="seal-bench-"), max_failures=0,
                             resources={})
            list(pool.run([replace(j, job_id=f"warm-{j.job_id}") for j in jobs[:workers]], lambda _: None))
            start = time.perf_counter()
            list(pool.run(jobs, lambda _: None))
            rates[f"Ray Train pool, {workers} worker(s)"] = len(jobs) / (time.perf_counter() - start)
            pool.shutdown()

    base = rates["in-process, 1 at a time"]
    for name, rate in rates.items():
        print(f"{name:32s} {rate:7.2f} jobs/s   x{rate / base:.2f}")


if __name__ == "__main__":
    main()
