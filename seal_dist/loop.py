"""The SEAL outer loop (ReST-EM), round by round.

Round r samples K self-edits per training context from policy v, scores each by S inner-loop updates
against the context's cached baseline, keeps the best per context and fine-tunes the policy into v+1.
Every round also measures held-out accuracy after an update with the policy's own self-edits; a last
evaluation-only round measures the final policy.
"""

import random
import time
import zlib
from collections import defaultdict
from statistics import mean

from omegaconf import DictConfig

from seal_dist import models
from seal_dist.cluster import Components, ray_cluster
from seal_dist.config import to_container
from seal_dist.inner.job import InnerJob
from seal_dist.learner import rest_em
from seal_dist.rundir import RunDir
from seal_dist.sampling import screen
from seal_dist.sampling.screen import Sample
from seal_dist.tasks.interface import Task, create
from seal_dist.tracking import Tracker


def train(cfg: DictConfig) -> dict:
    task = create(cfg)
    train_contexts, heldout = task.load("train"), task.load("heldout")[: cfg.heldout_contexts]
    model_path = models.resolve_path(cfg.model, task)
    task.use_tokenizer(models.load_tokenizer(model_path))
    run = RunDir(cfg.run_dir)  # written once the data and the model are found
    run.save_config(cfg)
    by_id = {c.id: c for c in train_contexts + heldout}
    first, policy = (run.checkpoint() or {"round": -1})["round"] + 1, run.policy(model_path)
    summary, records = run.summary(), run.results()
    with ray_cluster(cfg.resources, run.root / "logs", cfg.verbose):
        tracker = Tracker(cfg.logger, str(run.root.resolve()), to_container(cfg), cfg.progress, cfg.verbose)
        parts = Components(cfg, model_path, str(run.policy_dir), policy)
        try:
            for r in range(first, cfg.rounds + 1):
                final, version, timing = r == cfg.rounds, policy.version, Timer()
                contexts = [] if final else contexts_for_round(train_contexts, cfg.contexts_per_round, cfg.seed, r)
                samples = run.load_samples(r)  # a resumed round keeps the self-edits it already scored
                if samples is None:
                    samples = sample_round(parts, task, contexts, heldout, cfg, r, tracker)
                    run.save_samples(r, samples)  # as the model wrote them
                edits, bad_output = screened(task, contexts, heldout, samples)
                timing.lap("sample")
                jobs = round_jobs(task, contexts, heldout, edits, r, version, cfg)
                records += run_jobs(parts, task, by_id, run, tracker, jobs, records, r)
                mine = [rec for rec in records if rec["round"] == r]
                timing.lap("inner")
                if final:
                    summary["final"] = {"policy_version": version, **heldout_accuracy(mine), **bad_output,
                                        **task.counters()}
                    tracker.log_final(summary["final"])
                else:
                    scored = score_self_edits(mine, {c.id: task.prompt(c) for c in contexts})
                    kept = rest_em.select(scored, cfg.learner.top_k, cfg.learner.min_gain, cfg.learner.min_advantage,
                                        cfg.learner.min_reward)
                    tracker.phase(r, f"learner: SFT on {len(kept)} self-edits", 1)
                    update = parts.learn([(s.prompt, s.self_edit) for s in kept], version + 1, cfg.seed + r)
                    timing.lap("learn")
                    if update is not None:
                        policy = update["policy"]
                        parts.publish(policy)  # with learner.merge: the sampler's engines restart on its weights
                    timing.lap("sync")
                    row = round_row(r, version, mine, scored, kept, update,
                                    {**heldout_accuracy(mine), **bad_output, **task.counters()}, timing.laps)
                    summary["rounds"].append(row)
                    tracker.log_round(row, [vars(s) for s in scored])
                run.save_summary(summary)
                run.save_checkpoint(r, policy)
        finally:
            parts.shutdown()
            task.close()
            tracker.close()
    tracker.print_table(summary["rounds"], summary.get("final"))
    return summary


class Timer:
    """Seconds spent in each phase of a round, and in total."""

    def __init__(self):
        self.laps, self._start, self._last = {}, time.perf_counter(), time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase], self.laps["total"], self._last = now - self._last, now - self._start, now


def contexts_for_round(contexts: list, n: int, seed: int, r: int) -> list:
    """Round r's block of a seeded shuffle of the training contexts (wrapping around)."""
    order = list(range(len(contexts)))
    random.Random(seed).shuffle(order)
    return [contexts[order[(r * n + i) % len(order)]] for i in range(min(n, len(order)))]


def sample_round(parts: Components, task: Task, contexts, heldout, cfg: DictConfig, r: int, tracker) -> dict:
    s = cfg.sampler
    tracker.phase(r, f"sampling {len(contexts)}x{s.num_samples} + {len(heldout)} self-edits", 1)
    train = sample_self_edits(parts, task, contexts, s.num_samples, s.temperature, cfg.seed + r, s.parse_tries)
    held = sample_self_edits(parts, task, heldout, 1, s.heldout_temperature, cfg.seed + r, s.parse_tries)
    return {"train": train, "heldout": held}


def sample_self_edits(parts: Components, task: Task, contexts: list, n: int, temperature: float, seed: int,
                      tries: int) -> dict[str, list[Sample]]:
    """n self-edits per context, as sampled; one that does not parse is sampled again, up to `tries` samples
    in all (the last one is kept either way: its job trains nothing and its record says why)."""
    prompts = {c.id: task.prompt(c) for c in contexts}
    edits = dict(zip(prompts, parts.sample(list(prompts.values()), n, temperature, seed)))
    for attempt in range(1, tries):
        bad = [(cid, k) for cid, es in edits.items() for k, e in enumerate(es) if task.parse_failure(screen.clean(e.text))]
        if not bad:
            break
        again = parts.sample([prompts[cid] for cid, _ in bad], 1, temperature, seed + 7919 * attempt)
        for (cid, k), [edit] in zip(bad, again):
            edits[cid][k] = edit
    return edits


def screened(task: Task, contexts, heldout, samples: dict) -> tuple[dict, dict[str, float]]:
    """The round's self-edits as clean texts, per split, and the rate of each kind of bad output (see
    sampling.screen)."""
    edits, flags = {}, []
    for split, ctxs in (("train", contexts), ("heldout", heldout)):
        edits[split], split_flags = screen.cleaned(samples[split], {c.id: task.prompt(c) for c in ctxs}, task.parse_failure)
        flags += split_flags
    return edits, screen.rates(flags)


def round_jobs(task, contexts, heldout, edits, r, version, cfg) -> list[tuple[InnerJob, dict]]:
    """A baseline job per context, S jobs per training self-edit, S jobs per held-out self-edit."""
    jobs = []

    def add(split: str, ctx, sample: int, repeat: int, self_edit: str | None):
        job_id = f"r{r}-{split}-{ctx.id}-s{sample}-x{repeat}"
        seed = zlib.crc32(job_id.encode()) ^ cfg.seed
        meta = {"round": r, "split": split, "context_id": ctx.id, "sample": sample, "repeat": repeat,
                "policy_version": version, "self_edit": self_edit, "parse_error": parse_error(task, self_edit)}
        jobs.append((task.make_job(job_id, ctx, self_edit, version, seed), meta))

    for split, ctxs in (("train", contexts), ("heldout", heldout)):
        for ctx in ctxs:
            add(split, ctx, -1, 0, None)  # the baseline: greedy, so computed once
            for k, edit in enumerate(edits[split][ctx.id]):
                for repeat in range(cfg.inner.repeats):
                    add(split, ctx, k, repeat, edit)
    return jobs


def parse_error(task: Task, self_edit: str | None) -> str | None:
    return None if self_edit is None else task.parse_failure(self_edit)


def run_jobs(parts: Components, task: Task, contexts: dict, run: RunDir, tracker, jobs,
             records, r: int | None) -> list[dict]:
    """Runs the jobs not already in `records` (a resumed round), recording each result as soon as it is scored
    (a grading that fails loses none before it); `r` labels the progress bar (None: not a training round)."""
    done = {rec["job_id"] for rec in records}
    todo = {job.job_id: (job, meta) for job, meta in jobs if job.job_id not in done}
    tracker.phase(r, "inner loop", len(jobs))
    new = []
    for results in parts.run_jobs([job for job, _ in todo.values()], on_progress=lambda n: tracker.advance(len(jobs) - len(todo) + n)):
        for res in results:
            scored = job_records(task, contexts, todo[res.job_id][1], res)
            run.append_results(scored)
            new += scored
    return new


def job_records(task: Task, contexts: dict, meta: dict, res) -> list[dict]:
    """A result's records, each with its reward: one, or one per context for a joint update (meta["shares"]:
    per context, in the order of the job's evaluation prompts, its record's own fields (context_id, ...) and
    its count of prompts)."""
    meta = dict(meta)
    shares, start, records = meta.pop("shares", None) or [({}, len(res.generations))], 0, []
    for fields, n in shares:
        own, generations, start = {**meta, **fields}, res.generations[start : start + n], start + n
        reward = None if res.error else task.score(contexts[own["context_id"]], generations)
        records.append({**own, "job_id": res.job_id, "reward": reward, "error": res.error,
                        "attempts": res.attempts, "generations": list(generations), "loss_before": res.loss_before,
                        "loss_after": res.loss_after, "train_s": res.train_s, "eval_s": res.eval_s,
                        "worker": res.worker})
    return records


def succeeded(records: list[dict]) -> list[dict]:
    """The records of jobs that did not fail (a failed update has no reward and is never selected)."""
    return [rec for rec in records if rec["error"] is None]


def score_self_edits(records: list[dict], prompts: dict[str, str]) -> list[rest_em.Scored]:
    """Each training self-edit's mean reward over its successful repeats, beside its context's baseline."""
    train = [rec for rec in succeeded(records) if rec["split"] == "train"]
    baseline = {rec["context_id"]: rec["reward"] for rec in train if rec["sample"] < 0}
    rewards = defaultdict(list)
    for rec in train:
        if rec["sample"] >= 0 and rec["context_id"] in baseline:
            rewards[(rec["context_id"], rec["sample"], rec["self_edit"])].append(rec["reward"])
    return [rest_em.Scored(ctx, k, prompts[ctx], edit, mean(rs), baseline[ctx]) for (ctx, k, edit), rs in sorted(rewards.items())]


def heldout_accuracy(records: list[dict]) -> dict:
    held = [rec for rec in succeeded(records) if rec["split"] == "heldout"]
    return {"heldout_baseline": mean(rec["reward"] for rec in held if rec["sample"] < 0),
            "heldout_accuracy": mean(rec["reward"] for rec in held if rec["sample"] >= 0)}


def round_row(r, version, records, scored, kept, update, stats, timing) -> dict:
    best = defaultdict(float)
    for s in scored:
        best[s.context_id] = max(best[s.context_id], s.reward)
    return {
        "round": r, "policy_version": version,
        "reward_mean": mean(s.reward for s in scored),
        "reward_max": mean(best.values()),  # mean over contexts of the best self-edit's reward
        "baseline_mean": mean({s.context_id: s.baseline for s in scored}.values()),
        "kept": len(kept), "learner_loss": update["loss"] if update else None,
        "policy_norm": update["norm"] if update else None, "policy_clipped": update["clipped"] if update else None,
        "failed_jobs": sum(1 for rec in records if rec["error"] is not None),
        **stats, "timing_s": timing,
    }
