"""Model output is untrusted: each kind of bad self-edit is flagged and cleaned (sampling.screen), and a real
round (local Ray, Ray Train inner workers, ReST-EM learner) whose self-edits are all bad ones completes, with
their rates in its summary."""

import json
from pathlib import Path

from seal_dist import loop
from seal_dist.rundir import RunDir
from seal_dist.sampling.screen import Sample, clean, rates, screen
from seal_dist.tasks.interface import create

PROMPT = "Passage:\nTorvi Sal\nTorvi Sal taught Ulash Mel.\n\nImplications:\n"


def test_each_kind_of_bad_output_is_flagged():
    def kinds(text, truncated=False, parse_failure=None):
        return {k for k, v in screen(Sample(text, truncated), PROMPT, parse_failure).items() if v}

    assert kinds("Torvi Sal taught a class.") == set()
    assert kinds(" \n\t") == {"empty"}
    assert kinds("Torvi Sal taught Ulash Mel.") == {"repeats_prompt"}
    assert kinds("a fact\x07\x1b[0m and \ufffd more") == {"control"} and clean("a\x07b\ufffd\tc\n") == "ab\tc\n"
    assert kinds("\x00\x01") == {"control", "empty"}
    assert kinds("1. a fact\n" * 50, truncated=True) == {"truncated"}
    assert kinds("{not json", parse_failure="not JSON") == {"unparsed"}
    assert rates([screen(Sample(" ", False), PROMPT, None), screen(Sample("fine", True), PROMPT, None)]) == {
        "self_edit/control_frac": 0.0, "self_edit/empty_frac": 0.5, "self_edit/repeats_prompt_frac": 0.0,
        "self_edit/truncated_frac": 0.5, "self_edit/unparsed_frac": 0.0}


def test_a_round_of_bad_self_edits_completes_and_reports_their_rates(tmp_path, run_config):
    cfg = run_config(tmp_path, "rounds=1", "task.max_sequences=4")
    task = create(cfg)
    contexts = loop.contexts_for_round(task.load("train"), cfg.contexts_per_round, cfg.seed, 0)
    heldout = task.load("heldout")[: cfg.heldout_contexts]
    long = "\n".join(f"{i}. {contexts[1].title} knows fact {i}." for i in range(1, 400))  # far past the caps
    train = {contexts[0].id: [[" \n ", False], [contexts[0].text, False]],
             contexts[1].id: [[f"{contexts[1].title} \x07taught\ufffd music.\x1b", False], [long, True]]}
    held = {heldout[0].id: [["\x00\x01", False]], heldout[1].id: [[f"{heldout[1].title} owns a lighthouse.", False]]}
    RunDir(cfg.run_dir).save_samples(0, {"train": train, "heldout": held})  # what round 0's sampler wrote

    summary = loop.train(cfg)
    [row] = summary["rounds"]
    assert (row["self_edit/empty_frac"], row["self_edit/repeats_prompt_frac"], row["self_edit/control_frac"],
            row["self_edit/truncated_frac"], row["self_edit/unparsed_frac"]) == (2 / 6, 1 / 6, 2 / 6, 1 / 6, 0.0)
    records = [json.loads(line) for line in (Path(cfg.run_dir) / "results.jsonl").read_text().splitlines()]
    assert all(r["error"] is None and 0 <= r["reward"] <= 1 for r in records)
    edits = {(r["context_id"], r["sample"]): r["self_edit"] for r in records if r["round"] == 0 and r["sample"] >= 0}
    assert edits[(contexts[1].id, 0)] == f"{contexts[1].title} taught music."  # cleaned before training
    assert edits[(heldout[0].id, 0)] == ""  # nothing left: the passage alone trains
    assert len(task.training_texts(contexts[1], long)) == 4 + 1  # 4 sequences, then the passage
    assert summary["final"]["policy_version"] == 1
