"""`seal-dist eval`: the paper's comparison on held-out contexts. Each kind of update is applied to the base
model with the same inner-loop settings, and no-context accuracy is measured afterwards:

    no update | passage only | round-0 self-edits | the trained policy's self-edits | self-edits from a file

Writes eval.json, eval.png (bar chart), results.jsonl and, for a training run, rl_curve.png.

    seal-dist eval experiment=demo_cpu eval.run=runs/<time>
    seal-dist eval task=squad model=hf model.path=/ckpt eval.self_edits_file=../shared/data/seal/knowledge/gpt4_1_val.json
"""

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

import hydra
import matplotlib
import numpy as np
from omegaconf import DictConfig

from seal_dist import config, models, stats
from seal_dist.cluster import Components, ray_cluster
from seal_dist.config import UserError, to_container
from seal_dist.loop import run_jobs, succeeded
from seal_dist.rundir import RunDir
from seal_dist.tasks.knowledge import Context, KnowledgeTask, parse_records, read_records
from seal_dist.tracking import Tracker
from seal_dist.train import CONF_DIR

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

NO_UPDATE, PASSAGE = "no update", "passage only"
ADAPTER_ID = 10**6  # the sampler's LoRA id for an adapter given by path (training versions count from 1)


def evaluate(cfg: DictConfig) -> list[dict]:
    task = KnowledgeTask(cfg.task)
    contexts = task.load("heldout")[: cfg.eval.contexts]
    compared = policies(cfg.eval)  # the run, adapter and file the settings name are checked before Ray starts
    from_file = {}
    if cfg.eval.self_edits_file is not None:
        condition = f"file: {Path(cfg.eval.self_edits_file).stem}"
        from_file[condition] = file_self_edits(cfg.eval.self_edits_file, contexts, cfg.eval.samples)
    model_path = models.resolve_path(cfg.model, cfg.task)
    out = RunDir(cfg.run_dir)
    out.save_config(cfg)
    with ray_cluster(cfg.resources):
        tracker = Tracker(cfg.logger, str(out.root.resolve()), to_container(cfg), cfg.progress)
        parts = Components(cfg, model_path, policy_dir=None)
        parts.publish(0, None)  # every update is applied to the base model
        try:
            edits = {NO_UPDATE: {c.id: [None] for c in contexts}, PASSAGE: {c.id: [""] for c in contexts}}
            for name, version, path in compared:
                parts.use_sampler_policy(version, path)
                tracker.phase(None, f"sampling self-edits: {name}", 1)
                sampled = parts.sample([task.prompt(c) for c in contexts], cfg.eval.samples, cfg.eval.temperature, cfg.seed)
                edits[name] = dict(zip([c.id for c in contexts], sampled))
            edits.update(from_file)
            jobs = eval_jobs(task, contexts, edits, cfg.eval.seeds)
            records = run_jobs(parts, task, {c.id: c for c in contexts}, out, tracker, jobs, out.results(), None)
        finally:
            parts.shutdown()
            tracker.close()
    rows, gaps = summarize(records, list(edits), cfg.eval)
    for row in rows:  # what each kind of update writes: how many of the questions' answers it states
        stated = [task.answers_in_update(c, e) for c in contexts for e in edits[row["update"]][c.id]]
        row["answers_stated"] = None if None in stated else mean(stated)
    (out.root / "eval.json").write_text(json.dumps(
        {"rows": rows, "orderings": gaps, "contexts": len(contexts), "confidence": cfg.eval.confidence}, indent=2))
    bar_chart(rows, out.root / "eval.png")
    if cfg.eval.run is not None:
        rl_curve(RunDir(cfg.eval.run).summary(), out.root / "rl_curve.png")
    tracker.print_eval(rows, gaps, cfg.eval.confidence, str(out.root))
    return rows


def policies(cfg) -> list[tuple[str, int, str | None]]:
    """(name, version, adapter) of each policy whose self-edits are compared: the base model (round 0) and
    the trained policy, if one is given."""
    found = [("round-0 self-edits", 0, None)]
    if cfg.run is not None:
        checkpoint = RunDir.existing(cfg.run, "eval.run").checkpoint()
        if checkpoint is None:
            raise UserError(f"eval.run={cfg.run}: the run has not finished a round (no checkpoint.json)")
        if checkpoint["policy_path"] is not None:
            found.append((f"policy v{checkpoint['policy_version']} self-edits", checkpoint["policy_version"],
                          checkpoint["policy_path"]))
    if cfg.policy is not None:
        if not (Path(cfg.policy) / "adapter_config.json").is_file():
            raise UserError(f"eval.policy={cfg.policy}: not a PEFT adapter folder (no adapter_config.json)")
        found.append((f"policy {Path(cfg.policy).name} self-edits", ADAPTER_ID, cfg.policy))
    return found


def file_self_edits(path: str, contexts: list[Context], samples: int) -> dict[str, list[str]]:
    """The first `samples` completions of each context in a SEAL-schema file, matched by title and passage."""
    records = read_records(path)
    parse_records(records, path)  # the file must follow the SEAL schema, questions included
    by_passage = {(r["title"], r["context"]): r.get("completions", []) for r in records}
    found = {}
    for ctx in contexts:
        completions = by_passage.get((ctx.title, ctx.text))
        if not completions:
            raise UserError(f"{path}: no completions for the held-out passage '{ctx.title}' ({ctx.id})")
        found[ctx.id] = completions[:samples]
    return found


def eval_jobs(task: KnowledgeTask, contexts: list[Context], edits: dict, seeds: list[int]) -> list[tuple]:
    jobs = []
    for condition, per_context in edits.items():
        for ctx in contexts:
            for k, edit in enumerate(per_context[ctx.id]):
                for seed in seeds[:1] if edit is None else seeds:  # no update: greedy, the same every time
                    job_id = f"{condition}|{ctx.id}|s{k}|seed{seed}"
                    meta = {"round": 0, "split": "heldout", "condition": condition, "context_id": ctx.id,
                            "sample": k, "repeat": seed, "policy_version": 0, "self_edit": edit,
                            "questions": len(ctx.questions)}
                    jobs.append((task.make_job(job_id, ctx, edit, 0, seed), meta))
    return jobs


def summarize(records: list[dict], conditions: list[str], cfg) -> tuple[list[dict], list[dict]]:
    """One row per condition: its accuracy (the mean over contexts of each context's mean over its successful
    updates) with a bootstrap interval over contexts, the number of updates and of questions; and each
    condition against the one before it, with the paired interval of the gap and whether it excludes 0."""
    ok = succeeded(records)
    per_context = defaultdict(list)
    for r in ok:
        per_context[(r["condition"], r["context_id"])].append(r["reward"])
    # a context where every update of some condition failed is left out of all, so the comparison stays paired
    contexts = sorted(set.intersection(*({c for (k, c) in per_context if k == name} for name in conditions)))
    if not contexts:
        raise RuntimeError("no held-out context has a successful update under every condition")
    scores = np.array([[mean(per_context[(name, c)]) for c in contexts] for name in conditions])
    resampled = stats.bootstrap(scores, cfg.bootstrap, cfg.bootstrap_seed)
    questions = {r["context_id"]: r["questions"] for r in ok}
    rows = []
    for i, name in enumerate(conditions):
        ci = stats.interval(scores[i].mean(), resampled[i], cfg.confidence)
        rows.append({"update": name, "accuracy": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                     "updates": sum(len(per_context[(name, c)]) for c in contexts),
                     "questions": sum(questions[c] for c in contexts)})
    gaps = [{"better": o.better, "worse": o.worse, "gap": o.gap.estimate, "ci_low": o.gap.low, "ci_high": o.gap.high,
             "significant": o.significant} for o in stats.orderings(conditions, scores, resampled, cfg.confidence)]
    return rows, gaps


def bar_chart(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    errors = [[r["accuracy"] - r["ci_low"] for r in rows], [r["ci_high"] - r["accuracy"] for r in rows]]
    ax.bar(range(len(rows)), [r["accuracy"] for r in rows], yerr=errors, capsize=4)
    ax.set_xticks(range(len(rows)), [r["update"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("no-context accuracy after the update")
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
    ax.set_ylabel("held-out accuracy")
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
