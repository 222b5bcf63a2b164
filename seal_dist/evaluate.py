"""`seal-dist eval`: the paper's comparison on held-out contexts. Each kind of update is applied to the base
model with the same inner-loop settings, and the updated model is scored as in training:

    the task's conditions before | round-0 self-edits | the trained policy's self-edits | the task's after

(knowledge: no update and passage only | ... | self-edits from a file; ARC: in-context learning | ... | oracle).
Writes eval.json, eval.png (bar chart), results.jsonl and, for a training run, rl_curve.png.

    seal-dist eval experiment=demo_cpu eval.run=runs/<time>
    seal-dist eval task=squad model=hf model.path=/ckpt eval=paper_table
"""

import json
import random
from collections import defaultdict
from pathlib import Path
from statistics import mean

import hydra
import matplotlib
import numpy as np
from omegaconf import DictConfig

from seal_dist import config, models, stats
from seal_dist.cluster import Components, ray_cluster
from seal_dist.config import EvalMode, UserError, to_container
from seal_dist.inner.job import InnerJob
from seal_dist.loop import parse_error, run_jobs, sample_self_edits, succeeded
from seal_dist.policy import Policy
from seal_dist.rundir import RunDir, policy_at
from seal_dist.sampling import screen
from seal_dist.tasks.interface import Condition, Task, create
from seal_dist.tracking import Tracker
from seal_dist.train import CONF_DIR

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

POLICY_ID = 10**6  # the sampler's version of the policy given by path (training versions count from 1)


def evaluate(cfg: DictConfig) -> list[dict]:
    task = create(cfg)
    contexts = task.load("heldout")[: cfg.eval.contexts]
    graded = drawn(task, contexts, cfg.eval.questions, cfg.eval.questions_seed)  # what is asked after an update
    before, after = task.conditions(contexts, cfg.eval)
    run = trained_run(cfg.eval)  # checked before the model is built
    model_path = models.resolve_path(cfg.model, task)
    compared = policies(cfg.eval, run, model_path)  # the policies the settings name are checked before Ray starts
    task.use_tokenizer(models.load_tokenizer(model_path))
    out = RunDir(cfg.run_dir)
    out.save_config(cfg)
    with ray_cluster(cfg.resources, out.root / "logs", cfg.verbose):
        tracker = Tracker(cfg.logger, str(out.root.resolve()), to_container(cfg), cfg.progress, cfg.verbose)
        parts = Components(cfg, model_path, None, Policy(0, model_path, None))  # updates apply to the base model
        try:
            conditions = list(before)
            for name, policy in compared:
                parts.sampler.use_policy(policy)
                tracker.phase(None, f"sampling self-edits: {name}", 1)
                samples = sample_self_edits(parts, task, contexts, cfg.eval.samples, cfg.eval.temperature, cfg.seed,
                                            cfg.sampler.parse_tries)
                edits, _ = screen.cleaned(samples, {c.id: task.prompt(c) for c in contexts}, task.parse_failure)
                conditions.append(Condition(name, edits))
            conditions += after
            make_jobs = joint_jobs if cfg.eval.mode == EvalMode.cpt else eval_jobs
            jobs = make_jobs(task, graded, conditions, cfg.eval.seeds)
            records = run_jobs(parts, task, {c.id: c for c in graded}, out, tracker, jobs, out.results(), None)
        finally:
            parts.shutdown()
            task.close()
            tracker.close()
    rows, gaps = summarize(records, conditions, cfg.eval)
    for row, condition in zip(rows, conditions):  # what each kind of update writes or chooses, on average
        described = [task.describe(c, e) for c in contexts for e in condition.edits[c.id]]
        keys = dict.fromkeys(key for d in described for key in d)
        row.update({key: mean(d[key] for d in described if key in d) for key in keys})
    (out.root / "eval.json").write_text(json.dumps(
        {"rows": rows, "orderings": gaps, "contexts": len(contexts), "confidence": cfg.eval.confidence,
         "grading": task.counters()}, indent=2))
    bar_chart(rows, out.root / "eval.png")
    if run is not None:
        rl_curve(run.summary(), out.root / "rl_curve.png")
    tracker.print_eval(rows, gaps, cfg.eval.confidence, str(out.root))
    return rows


def trained_run(cfg) -> RunDir | None:
    """The training run `eval.run` names, if any; a UserError where it is not one that finished a round."""
    if cfg.run is None:
        return None
    run = RunDir.existing(cfg.run, "eval.run")
    if run.checkpoint() is None:
        raise UserError(f"eval.run={cfg.run}: the run has not finished a round (no checkpoint.json)")
    return run


def policies(cfg, run: RunDir | None, base_model: str) -> list[tuple[str, Policy]]:
    """Each policy whose self-edits are compared, with its name: the base model (round 0), the trained policy
    of `eval.run` if it has one, and `eval.policy`."""
    found = [("round-0 self-edits", Policy(0, base_model, None))]
    if run is not None:
        policy = run.policy(base_model)
        if policy.version > 0:
            found.append((f"policy v{policy.version} self-edits", policy))
    if cfg.policy is not None:
        found.append((f"policy {Path(cfg.policy).name} self-edits", policy_at(cfg.policy, "eval.policy", base_model,
                                                                                POLICY_ID)))
    return found


def drawn(task: Task, contexts: list, n: int | None, seed: int) -> list:
    """The contexts as graded: each on its items among `n` drawn (seeded) from all the contexts' items; every
    item where `n` is None."""
    if n is None:
        return contexts
    everything = [(c.id, i) for c in contexts for i in range(task.items(c))]
    if n > len(everything):
        raise UserError(f"eval.questions={n}: the {len(contexts)} contexts have {len(everything)} questions in all")
    chosen = set(random.Random(seed).sample(everything, n))
    return [task.keep_items(c, tuple(i for i in range(task.items(c)) if (c.id, i) in chosen)) for c in contexts]


def eval_jobs(task: Task, contexts: list, conditions: list[Condition], seeds: list[int]) -> list[tuple]:
    jobs = []
    for condition in conditions:
        for ctx in contexts:
            for k, edit in enumerate(condition.edits[ctx.id]):
                for seed in seeds[:1] if edit is None else seeds:  # no update: greedy, the same every time
                    job_id = f"{condition.name}|{ctx.id}|s{k}|seed{seed}"
                    meta = {"round": 0, "split": "heldout", "condition": condition.name, "context_id": ctx.id,
                            "sample": k, "repeat": seed, "policy_version": 0, "self_edit": edit,
                            "parse_error": parse_error(task, edit), "items": task.items(ctx)}
                    jobs.append((task.make_job(job_id, ctx, edit, 0, seed), meta))
    return jobs


def joint_jobs(task: Task, contexts: list, conditions: list[Condition], seeds: list[int]) -> list[tuple]:
    """Continued pretraining: per condition and seed ONE update on the training examples of every context's
    self-edits, each distinct example once (so a passage trains once, not once per self-edit), then every
    context's evaluation prompts; each context with any is scored on its share of the answers."""
    jobs = []
    for condition in conditions:
        updates = [(ctx, task.make_job("", ctx, edit, 0, 0)) for ctx in contexts for edit in condition.edits[ctx.id]]
        settings = {(u.loss_on_prompt, u.lr, u.epochs) for _, u in updates if u.examples}
        if len(settings) > 1:
            raise UserError(f"eval.mode=cpt: the self-edits of '{condition.name}' choose different training "
                            "settings; one update needs one set (knowledge incorporation's use the inner loop's)")
        loss_on_prompt, lr, epochs = settings.pop() if settings else (False, None, None)
        examples = tuple(dict.fromkeys(ex for _, u in updates for ex in u.examples))
        prompts = {ctx.id: u.eval_prompts for ctx, u in updates}
        for seed in seeds[:1] if not examples else seeds:
            job_id = f"{condition.name}|cpt|seed{seed}"
            meta = {"round": 0, "split": "heldout", "condition": condition.name, "sample": 0, "repeat": seed,
                    "policy_version": 0, "self_edit": None, "parse_error": None, "examples": len(examples),
                    "shares": [({"context_id": ctx.id, "items": task.items(ctx)}, len(prompts[ctx.id]))
                               for ctx in contexts if prompts[ctx.id]]}
            job = InnerJob(job_id, 0, examples, loss_on_prompt, tuple(p for ctx in contexts for p in prompts[ctx.id]),
                           seed, lr, epochs)
            jobs.append((job, meta))
    return jobs


def summarize(records: list[dict], conditions: list[Condition], cfg) -> tuple[list[dict], list[dict]]:
    """One row per condition: its accuracy (the mean over contexts of each context's mean over its successful
    updates, or their best for a best-of condition) with a bootstrap interval over contexts, the number of
    updates and of graded items; and each condition against the one before it, with the paired interval of the
    gap and whether it excludes 0."""
    ok = succeeded(records)
    per_context = defaultdict(list)
    for r in ok:
        per_context[(r["condition"], r["context_id"])].append(r["reward"])
    names = [c.name for c in conditions]
    # a context where every update of some condition failed is left out of all, so the comparison stays paired
    contexts = sorted(set.intersection(*({c for (k, c) in per_context if k == name} for name in names)))
    if not contexts:
        raise RuntimeError("no held-out context has a successful update under every condition")
    scores = np.array([[(max if cond.best_of else mean)(per_context[(cond.name, c)]) for c in contexts]
                       for cond in conditions])
    resampled = stats.bootstrap(scores, cfg.bootstrap, cfg.bootstrap_seed)
    items = {r["context_id"]: r["items"] for r in ok}
    rows = []
    for i, name in enumerate(names):
        ci = stats.interval(scores[i].mean(), resampled[i], cfg.confidence)
        rows.append({"update": name, "accuracy": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                     "updates": sum(len(per_context[(name, c)]) for c in contexts),
                     "items": sum(items[c] for c in contexts)})
    gaps = [{"better": o.better, "worse": o.worse, "gap": o.gap.estimate, "ci_low": o.gap.low, "ci_high": o.gap.high,
             "significant": o.significant} for o in stats.orderings(names, scores, resampled, cfg.confidence)]
    return rows, gaps


def bar_chart(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    errors = [[r["accuracy"] - r["ci_low"] for r in rows], [r["ci_high"] - r["accuracy"] for r in rows]]
    ax.bar(range(len(rows)), [r["accuracy"] for r in rows], yerr=errors, capsize=4)
    ax.set_xticks(range(len(rows)), [r["update"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("score after the update (the task's reward)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rl_curve(summary: dict, path: Path) -> None:
    points = [(r["round"], r["heldout_accuracy"]) for r in summary["rounds"]]
    if "final" in summary:
        points.append((summary["final"]["policy_version"], summary["final"]["heldout_accuracy"]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set_xlabel("policy version (ReST-EM round)")
    ax.set_ylabel("held-out score")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with config.user_errors("seal-dist eval"):
        config.validate(cfg)
        evaluate(cfg)


if __name__ == "__main__":
    main()
