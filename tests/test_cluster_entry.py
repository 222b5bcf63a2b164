"""The cluster entry points: cluster.yaml passes Ray's own cluster-launcher validation, and jobs/submit.py runs
jobs on a real Ray head (`ray start --head`, the session's) with the checkout's code, the W&B settings
of the submitting shell and the Hydra overrides it was given."""

import asyncio
import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.job_submission import JobStatus, JobSubmissionClient

from tests.conftest import HEAD_CPUS, REPO

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # inside Ray's log tailing

SECRET = "test-key-" + uuid.uuid4().hex
_spec = importlib.util.spec_from_file_location("submit", REPO / "jobs" / "submit.py")
submit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(submit)


def launcher_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_ray_validation():
    cfg = prepare_config(launcher_config())
    validate_config(cfg)
    worker = cfg["available_node_types"]["gpu_worker"]
    assert worker["resources"]["GPU"] > 0 and worker["min_workers"] == 0
    assert any(".[gpu]" in c for c in cfg["setup_commands"])


@pytest.mark.parametrize("path", [("setup_command",), ("available_node_types", "gpu_worker", "min_worker")])
def test_cluster_yaml_misspelled_key_is_named(path):
    cfg = launcher_config()
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = node.pop(path[-1] + "s")
    with pytest.raises(jsonschema.ValidationError, match=f"'{path[-1]}' was unexpected"):
        validate_config(prepare_config(copy.deepcopy(cfg)))


def test_train_command_adds_cluster_settings_beside_the_overrides():
    cmd, dirs = ["python", "-m", "seal_dist.train"], [f"{k}={v}" for k, v in submit.CLUSTER_SETTINGS.items()][1:]
    assert all("${oc.env:HOME}/seal-dist-runs/" in d for d in dirs)
    assert submit.train_command(["--cfg", "job", "seed=1"]) == [*cmd, "--cfg", "job", "resources=cluster", *dirs,
                                                                 "seed=1"]
    assert submit.train_command(["seed=1", "-m"]) == [*cmd, "resources=cluster", *dirs, "seed=1", "-m"]
    assert submit.train_command([]) == [*cmd, "resources=cluster", *dirs]
    assert submit.train_command(["resources=local", "hydra.run.dir=x", "hydra.sweep.dir=y"]) == [
        *cmd, "resources=local", "hydra.run.dir=x", "hydra.sweep.dir=y"]
    env = submit.runtime_env(environ={"WANDB_API_KEY": "k", "WANDB_MODE": "offline", "HOME": "/x", "WANDB_ENTITY": ""})
    assert env["env_vars"] == {"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}
    assert env["working_dir"] == str(REPO) and ".venv" in env["excludes"]


def follow(address: str, job_id: str, timeout: float = 90) -> tuple[JobStatus, str]:
    """Waits for the job to end (its log stream closes) and returns its status and logs."""
    client = JobSubmissionClient(address)

    async def drain():
        async for _ in client.tail_job_logs(job_id):
            pass

    asyncio.run(asyncio.wait_for(drain(), timeout))
    return client.get_job_status(job_id), client.get_job_logs(job_id)


def test_submit_cli_passes_overrides_and_wandb_settings(head):
    """The console command as a user runs it (here with --no-wait): Hydra composes the run's config in the job,
    from the uploaded conf/, with the overrides given and `resources=cluster` added."""
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "WANDB_API_KEY": SECRET, "WANDB_MODE": "offline", "WANDB_PROJECT": "seal-dist-test"}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "--address", head, "--name", name,
                           "--no-wait", "--", "--cfg", "job", "seed=123", "logger=disabled"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ray job logs -f --address {head} {name}" in proc.stdout and "resources=cluster" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr

    status, logs = follow(head, name)
    assert status == JobStatus.SUCCEEDED, logs
    assert "seed: 123" in logs and "address: auto" in logs and "mode: disabled" in logs
    info = JobSubmissionClient(head).get_job_info(name)
    assert info.runtime_env["env_vars"]["WANDB_MODE"] == "offline"
    assert info.runtime_env["env_vars"]["WANDB_PROJECT"] == "seal-dist-test"


PROBE = r"""
import json, os, ray, seal_dist
from hydra import compose, initialize_config_dir
from seal_dist import train
from seal_dist.cluster import ray_cluster

def seen():
    import os, seal_dist
    return {"code": seal_dist.__file__, "WANDB_MODE": os.environ.get("WANDB_MODE"),
            "key_set": os.environ.get("WANDB_API_KEY") == SECRET, "own": os.environ.get("OWN")}

@ray.remote
class Probe:
    def seen(self):
        return seen()

with initialize_config_dir(train.CONF_DIR, version_base="1.3"):
    cfg = compose("config", overrides=["resources=cluster"])
import pathlib, tempfile
with ray_cluster(cfg.resources, pathlib.Path(tempfile.mkdtemp()) / "logs", verbose=True):  # as the training driver joins
    actor = Probe.options(runtime_env={"env_vars": {"OWN": "1"}}).remote()  # as the sampler engines are made
    out = {"driver": seen(), "task": ray.get(ray.remote(seen).remote()), "actor": ray.get(actor.seen.remote()),
           "cpus": ray.cluster_resources()["CPU"]}
print("PROBE " + json.dumps(out))
"""


def test_job_joins_the_cluster_with_the_uploaded_code_and_env(head):
    """A job that joins the cluster as the training driver does and runs a task and an actor with its own
    env_vars: all three import seal_dist from the uploaded checkout and see the W&B settings."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    probe = PROBE.replace("SECRET", repr(SECRET))
    rc = submit.submit(["python", "-c", probe], name, head, environ={"WANDB_MODE": "offline", "WANDB_API_KEY": SECRET})
    status, logs = follow(head, name)
    assert rc == 0 and status == JobStatus.SUCCEEDED, logs
    out = json.loads(next(line for line in logs.splitlines() if line.startswith("PROBE "))[len("PROBE "):])
    assert out["cpus"] == HEAD_CPUS  # the session's head, not some other cluster
    for where in ("driver", "task", "actor"):
        seen = out[where]
        assert "runtime_resources/working_dir_files" in seen["code"] and not seen["code"].startswith(str(REPO))
        assert seen["WANDB_MODE"] == "offline" and seen["key_set"], (where, seen)
    assert out["actor"]["own"] == "1"
