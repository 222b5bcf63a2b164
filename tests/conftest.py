"""Shared fixtures: composed configs, the tiny model built once per session, a private Ray cluster, a Ray head
with the job server (`ray start --head`)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
from hydra import compose, initialize_config_dir
from ray.job_submission import JobSubmissionClient

from seal_dist import config, models
from seal_dist.tasks.interface import create

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
SHARED_DATA = REPO.parent / "shared" / "data" / "seal"

# A small, fast version of the CPU demo: a briefly pretrained tiny model (mechanics, not learning).
TINY_MODEL = ["model.tiny.pretrain_steps=200", "task.pretraining.world.num_train=300", "task.pretraining.readers=300", "task.pretraining.copy_drills=300"]
FAST_RUN = [
    "experiment=demo_cpu",
    "rounds=2",
    "contexts_per_round=2",
    "heldout_contexts=2",
    "eval.contexts=2",
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
    return models.resolve_path(cfg.model, create(cfg))


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


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def live_pids(session: int) -> list[int]:
    """Processes of the session `ray start` opened, zombies excluded (Ray starts some workers in their own
    process group, but all stay in this session)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def stop_session(session: int) -> None:
    """SIGTERM, then SIGKILL what is left after a few seconds (gcs_server and the raylet outlast SIGTERM)."""
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        for pid in live_pids(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: not live_pids(session), grace, "ray processes exit")
            return
        except TimeoutError:
            continue


@pytest.fixture(scope="module")
def head(request):
    """A Ray head with the job server (one per module that uses it), on free ports and a private temp dir, with the
    module's HEAD_CPUS logical CPUs (default 2); yields the dashboard address."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent = free_ports(4)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={gcs}",
           f"--num-cpus={getattr(request.module, 'HEAD_CPUS', 2)}",
           "--include-dashboard=true", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
           f"--dashboard-agent-listen-port={agent}", f"--temp-dir={temp}", "--disable-usage-stats"]
    start = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        address = f"http://127.0.0.1:{dashboard}"
        wait_for(lambda: _answers(address), 60, f"the job server at {address}")
        yield address
    finally:
        stop_session(start.pid)
        shutil.rmtree(temp, ignore_errors=True)


def _answers(address: str) -> bool:
    try:
        JobSubmissionClient(address)
        return True
    except Exception:
        return False
