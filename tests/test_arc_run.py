"""Few-shot ARC end to end on the shared ARC-AGI files: `seal-dist train` and `seal-dist eval` with the tiny
model given by path (mechanics, not accuracy: the knowledge-pretrained test model writes no JSON)."""

import json

from seal_dist.evaluate import evaluate
from seal_dist.loop import train
from tests.conftest import FAST_RUN, compose_config


def test_arc_train_and_eval_on_the_shared_files(tmp_path, tiny_model, run_overrides):
    overrides = [
        *FAST_RUN, *run_overrides, "task=arc", "model=hf", f"model.path={tiny_model}", "model.dtype=float32",
        "task.train.tasks=[6150a2bd,5582e5ca]", "task.heldout.tasks=[66e6c45b]",  # small grids
        "rounds=1", "contexts_per_round=2", "heldout_contexts=1", "sampler.parse_tries=2",
        "task.augmentation.max_tokens=256", "task.augmentation.max_examples=8", "inner.max_seq_len=256",
        "task.max_answer_tokens=24", "task.oracle.augmentations=[[basic]]", "task.oracle.learning_rates=[1e-3]",
        "task.oracle.epochs=[1]", "task.oracle.strategies=[train_using_output_tokens]",
        "eval.contexts=1", "eval.samples=1", "eval.seeds=[0]",
    ]
    run = tmp_path / "run"
    summary = train(compose_config(*overrides, f"run_dir={run}"))
    assert [r["round"] for r in summary["rounds"]] == [0] and summary["final"]["policy_version"] == 1
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    sampled = [r for r in records if r["self_edit"] is not None]
    assert sampled and all(r["error"] is None and r["reward"] in (0.0, 1.0) for r in records)
    # a self-edit that is not a JSON configuration is a recorded parse failure, and its update trains nothing
    assert all(r["parse_error"].startswith("(text)") and r["loss_before"] is None for r in sampled
               if r["parse_error"] is not None)
    assert {r["context_id"] for r in records if r["split"] == "train"} == {"6150a2bd", "5582e5ca"}

    rows = evaluate(compose_config(*overrides, f"run_dir={tmp_path / 'eval'}", f"eval.run={run}"))
    assert [r["update"] for r in rows] == ["in-context (no TTT)", "round-0 self-edits", "policy v1 self-edits",
                                           "oracle configuration"]
    assert all(r["items"] == 1 and r["accuracy"] in (0.0, 1.0) for r in rows)
    assert rows[0].keys() == rows[-1].keys() - {"parsed", "trained", "basic", "size", "chain", "repeat",
                                                "all_tokens", "lr", "epochs"}
    assert rows[-1]["trained"] == 1.0 and rows[-1]["basic"] == 1.0  # the oracle's configuration trained
    evaluated = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
    oracle = [r for r in evaluated if r["condition"] == "oracle configuration"]
    assert len(oracle) == 1 and oracle[0]["loss_after"] < oracle[0]["loss_before"]  # the update learned
