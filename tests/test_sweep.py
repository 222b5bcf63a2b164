"""A Hydra sweep on a Ray cluster (jobs/sweep.py): a real `ray start --head`, two points submitted as two Ray
jobs that run side by side, each a training run with its own run directory and W&B run in the sweep's group."""

import importlib.util
import uuid

import pytest
from omegaconf import OmegaConf

from tests.conftest import FAST, HF_SAMPLER, REPO

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # inside Ray's log tailing

_spec = importlib.util.spec_from_file_location("sweep", REPO / "jobs" / "sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_sweep_points_are_every_combination_in_order():
    assert sweep.points(["a=1,2", "b=x", "c=range(2)"]) == [["a=1", "b=x", "c=0"], ["a=1", "b=x", "c=1"],
                                                           ["a=2", "b=x", "c=0"], ["a=2", "b=x", "c=1"]]


def test_a_two_point_sweep_runs_as_two_jobs_with_a_run_directory_each(head, tmp_path, model_cache, tiny_model):
    name = f"sweep-{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "sweep"
    rc = sweep.main(["--address", head, "--name", name, "--dir", str(folder), "--wait", "--", *FAST, HF_SAMPLER, "rounds=1",
                     "inner.num_workers=1", f"model.cache_dir={model_cache}", "logger=wandb_offline", "seed=0,1"])
    assert rc == 0
    assert sorted(p.name for p in folder.iterdir()) == ["0", "1"]
    for n in (0, 1):
        cfg = OmegaConf.load(folder / str(n) / "config.yaml")
        assert cfg.seed == n and cfg.logger.group == name and cfg.resources.address == "auto"
        assert (folder / str(n) / "summary.json").exists() and list((folder / str(n) / "wandb").glob("offline-run-*"))
