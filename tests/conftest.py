"""Shared fixtures: composed configs, the tiny model built once per session, a private Ray cluster."""

import os
from pathlib import Path

import pytest
import ray
from hydra import compose, initialize_config_dir

from seal_dist import config, models

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
SHARED_DATA = REPO.parent / "shared" / "data" / "seal"

# A small, fast version of the CPU demo: a briefly pretrained tiny model (mechanics, not learning).
TINY_MODEL = ["model.tiny.pretrain_steps=200", "model.tiny.world.num_train=300", "model.tiny.readers=300", "model.tiny.copy_drills=300"]
FAST_RUN = [
    "experiment=demo_cpu",
    "rounds=2",
    "contexts_per_round=2",
    "heldout_contexts=2",
    "sampler.num_samples=2",
    "sampler.max_tokens=40",
    "inner.epochs=1",
    "learner.epochs=1",
    "learner.min_advantage=null",  # keep a self-edit every round (the briefly trained model's rewards tie)
    "progress=false",
    "logger=disabled",
]
FAST = FAST_RUN + TINY_MODEL

config.register()
os.environ.setdefault("WANDB_SILENT", "true")


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """Where the session builds its tiny model; SEAL_DIST_TEST_MODELS=<dir> keeps it between sessions."""
    return os.environ.get("SEAL_DIST_TEST_MODELS") or str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_model(model_cache) -> str:
    """The path of the test-sized tiny model (built once per session)."""
    cfg = compose_config(*FAST, f"model.cache_dir={model_cache}", "run_dir=unused")
    return models.resolve_path(cfg.model, cfg.task)


def fast_config(tmp_path: Path, model_cache: str, *overrides: str):
    return compose_config(*FAST, f"model.cache_dir={model_cache}", f"run_dir={tmp_path / 'run'}", *overrides)


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray cluster with 2 logical GPUs, for tests that place actors themselves."""
    ray.init(address="local", num_cpus=6, num_gpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (the repository expects ../shared beside it)")
    return path
