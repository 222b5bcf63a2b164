"""Hydra composition of every preset, and clear errors for bad keys, types and values."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from seal_dist import config
from tests.conftest import CONF, compose_config

GROUPS = ["task", "task/prompt", "model", "sampler", "inner", "learner", "resources", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_config(f"experiment={experiment}", "run_dir=x", "model.path=/some/checkpoint")
    if cfg.model.tiny is not None:
        cfg.model.path = None
    config.validate(cfg)
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    for option in options(group):
        override = f"task/prompt={option}" if group == "task/prompt" else f"{group}={option}"
        cfg = compose_config(override, "run_dir=x", "model.path=/some/checkpoint")
        assert not OmegaConf.missing_keys(cfg), (group, option)


def test_prompt_presets_are_the_papers():
    cfg = compose_config("task/prompt=self_qa", "run_dir=x")
    assert cfg.task.prompt.template.endswith("in a question-answer format.\n\nPassage:\n{title}\n{context}\n\nQuestion 1: ")


@pytest.mark.parametrize("override, message", [
    ("inner.lora.rank=3", "Key 'rank' not in 'LoraConfig'"),
    ("contexts=3", "Key 'contexts' not in 'Config'"),
    ("inner.lr=abc", "could not be converted to Float"),
    ("task.grader.kind=bleu", "Invalid value 'bleu'"),
])
def test_bad_override_fails_naming_the_key(override, message):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(override)
    assert message in str(err.value.__cause__)


@pytest.mark.parametrize("override, message", [
    ("learner.lora.r=128", "learner.lora.r=128 exceeds sampler.max_lora_rank"),
    ("rounds=0", "rounds must be at least 1"),
    ("task.answer_template=no_field", "task.answer_template lacks"),
    ("model.path=/x", "set exactly one of model.path"),
    ("model=hf", "missing value for model.path"),
    ("eval.confidence=1.5", "eval.confidence must be between 0 and 1, got 1.5"),
    ("eval.contexts=0", "eval.contexts must be at least 1"),
])
def test_validate_names_the_problem(override, message):
    cfg = compose_config("run_dir=x", override)
    with pytest.raises(config.UserError, match=message):
        config.validate(cfg)


@pytest.mark.parametrize("overrides, run_dir", [
    ([], r"runs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"),
    (["resume=runs/2026-11-21_12-00-00"], "runs/2026-11-21_12-00-00"),  # a resumed run stays in its directory
])
def test_run_directory_is_runs_time_unless_resumed(overrides, run_dir):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert re.fullmatch(run_dir, cfg.hydra.run.dir)
