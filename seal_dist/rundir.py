"""A run directory: resolved config, per-job results, per-round summary and checkpoints.

    config.yaml      the resolved config (a resumed run reads it back)
    results.jsonl    one record per finished inner-loop job, appended as results arrive
    summary.json     {"rounds": [...], "final": {...}}, rewritten after every round
    rounds/<r>/samples.json   the round's sampled self-edits (reused if the round is resumed)
    checkpoint.json  the last complete round and the policy it produced
    policy/v<n>/     policy adapters in PEFT format (with learner.merge: each round's adapter alone)
    policy/v<n>-model/  with learner.merge: the model with every round's adapter up to n merged in
"""

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_dist.config import UserError
from seal_dist.policy import Policy


def write_atomic(path: Path, text: str) -> None:
    """Replaces the file's text in one step (a kill leaves the old text or the new, never part of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.results_path = self.root / "results.jsonl"
        self.summary_path = self.root / "summary.json"
        self.checkpoint_path = self.root / "checkpoint.json"
        self.config_path = self.root / "config.yaml"
        self.policy_dir = self.root / "policy"

    @classmethod
    def existing(cls, root: str, key: str) -> "RunDir":
        """The run directory that the setting `key` names; a UserError where it holds no seal-dist run."""
        if not (Path(root) / "config.yaml").is_file():
            raise UserError(f"{key}={root}: not a seal-dist run directory (no config.yaml)")
        return cls(root)

    def save_config(self, cfg: DictConfig) -> None:
        write_atomic(self.config_path, OmegaConf.to_yaml(cfg, resolve=True))

    def append_results(self, records: list[dict]) -> None:
        with self.results_path.open("a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def results(self) -> list[dict]:
        """Every complete record (a line cut short by a kill is dropped, and its job is redone)."""
        if not self.results_path.exists():
            return []
        text = self.results_path.read_text()
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if text and not text.endswith("\n"):
            write_atomic(self.results_path, "".join(json.dumps(r) + "\n" for r in records))
        return records

    def samples_path(self, round_: int) -> Path:
        return self.root / "rounds" / str(round_) / "samples.json"

    def save_samples(self, round_: int, samples: dict) -> None:
        path = self.samples_path(round_)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(samples, indent=1))

    def load_samples(self, round_: int) -> dict | None:
        path = self.samples_path(round_)
        return json.loads(path.read_text()) if path.exists() else None

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {"rounds": []}

    def save_summary(self, summary: dict) -> None:
        write_atomic(self.summary_path, json.dumps(summary, indent=2))

    def checkpoint(self) -> dict | None:
        return json.loads(self.checkpoint_path.read_text()) if self.checkpoint_path.exists() else None

    def policy(self, base_model: str) -> Policy:
        """The policy of the last complete round (before the first: version 0, the base model)."""
        c = self.checkpoint() or {"policy_version": 0, "policy_path": None}
        # a checkpoint written before learner.merge existed names no model folder: its policy is on the base model
        return Policy(c["policy_version"], c.get("policy_model", base_model), c["policy_path"])

    def save_checkpoint(self, round_: int, policy: Policy) -> None:
        state = {"round": round_, "policy_version": policy.version, "policy_path": policy.adapter,
                 "policy_model": policy.model}
        write_atomic(self.checkpoint_path, json.dumps(state, indent=2))


def policy_at(path: str, key: str, base_model: str, version: int) -> Policy:
    """The policy that the setting `key` names by path: a PEFT adapter folder (on the base model; served as
    `version`), a model folder (a merged policy, likewise), or a seal-dist run (its last round's policy)."""
    if (Path(path) / "adapter_config.json").is_file():
        return Policy(version, base_model, path)
    if (Path(path) / "config.json").is_file():
        return Policy(version, path, None)
    if (Path(path) / "config.yaml").is_file():
        policy = RunDir.existing(path, key).policy(base_model)
        if policy.version == 0:
            raise UserError(f"{key}={path}: the run has no trained policy yet (no checkpoint with a policy)")
        return policy
    raise UserError(f"{key}={path}: neither a PEFT adapter folder (adapter_config.json), a model folder "
                    "(config.json) nor a seal-dist run (config.yaml)")
