"""The batched inner-loop engine against the sequential one (one PEFT adapter at a time, the reference's way),
side by side in one run on the same jobs, on one device with the CPU demo's settings (its tiny model, LoRA,
lr, epochs and one torch thread, as a demo worker has):

    .venv/bin/python benchmarks/batched_inner.py [--jobs 32] [--k 1,4,16,32] [hydra overrides...]

Each job is an update on a held-out passage's self-edit (the passage's sentences as a numbered list, one of
the base policy's styles) followed by answering the passage's questions. Prints jobs per second, seconds of
training and of answering per job, and each row's speed-up over the sequential engine.
"""

import argparse
import time

import torch
from hydra import compose, initialize_config_dir

from seal_dist import config, models
from seal_dist.inner.batched import BatchedEngine
from seal_dist.inner.sequential import SequentialEngine
from seal_dist.tasks.knowledge.task import KnowledgeTask
from seal_dist.train import CONF_DIR


def numbered_sentences(text: str) -> str:
    return "\n".join(f"{i}. {s.strip()}." for i, s in enumerate(text.split("."), 1) if s.strip())


def measure(engine, jobs, k: int) -> dict:
    engine.run(jobs[:1])  # warm-up: first calls allocate
    start, results = time.perf_counter(), []
    for first in range(0, len(jobs), k):
        results += engine.run(jobs[first : first + k])
    wall = time.perf_counter() - start
    assert all(r.error is None for r in results)
    return {"jobs/s": len(jobs) / wall, "train s/job": sum(r.train_s for r in results) / len(jobs),
            "answer s/job": sum(r.eval_s for r in results) / len(jobs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--k", default="1,4,16,32", help="adapters per step of the batched engine")
    args, overrides = parser.parse_known_args()
    config.register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=demo_cpu", "run_dir=runs/benchmark", *overrides])
    torch.set_num_threads(cfg.resources.torch_threads)
    task = KnowledgeTask(cfg.task)
    path = models.resolve_path(cfg.model, task)
    tokenizer = models.load_tokenizer(path)
    contexts = task.load("heldout")[: args.jobs]
    jobs = [task.make_job(f"b{i}", c, numbered_sentences(c.text), 0, seed=i) for i, c in enumerate(contexts)]
    sizes = [int(k) for k in args.k.split(",")]
    print(f"{len(jobs)} jobs: {sum(len(j.examples) for j in jobs) / len(jobs):.1f} sequences x {cfg.inner.epochs} "
          f"epochs, {sum(len(j.eval_prompts) for j in jobs) / len(jobs):.1f} questions each; LoRA r={cfg.inner.lora.r} "
          f"on {len(cfg.inner.lora.target_modules)} projections; {torch.get_num_threads()} torch thread(s)")

    def engine(kind, k: int):
        cfg.inner.adapters_per_step = k
        return kind(models.load_model(path, cfg.model.dtype, "cpu"), tokenizer, cfg.inner, cfg.task.max_answer_tokens, 0)

    rows = {"sequential (PEFT, one at a time)": measure(engine(SequentialEngine, 1), jobs, 1)}
    for k in sizes:
        rows[f"batched, K={k}"] = measure(engine(BatchedEngine, k), jobs, k)
    base = rows["sequential (PEFT, one at a time)"]["jobs/s"]
    print(f"{'engine':34s} {'jobs/s':>8s} {'train s/job':>12s} {'answer s/job':>13s} {'speed-up':>9s}")
    for name, row in rows.items():
        print(f"{name:34s} {row['jobs/s']:8.2f} {row['train s/job']:12.3f} {row['answer s/job']:13.3f} "
              f"{row['jobs/s'] / base:8.2f}x")


if __name__ == "__main__":
    main()
