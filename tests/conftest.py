"""Shared fixtures and the test tiers.

The tiers (markers registered in pyproject.toml) come from the fixtures a test uses, by the table TIERS:
a test that joins the session's Ray head is `ray`, one that makes a whole run (train, eval, a CLI command that
runs) is also `e2e`, one whose sampler is vLLM is `vllm`, one on a cluster of several nodes is `multinode`.
`make test-fast` runs the tests in none of them; there, starting Ray raises. After each test of a tier, and
after each module, nothing it started is left running: no actor on the session's head, no process of this
session beyond those that were there before.

Fixtures: composed configs, the tiny model built once per session, the session's Ray head (`ray start --head`,
dashboard and job server, logical GPUs) that in-process tests join and runs are pointed at."""

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
from ray.util.state import list_actors

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
HF_SAMPLER = "sampler.engine=hf"  # the sampler where the test is not about the sampler: vLLM's start costs more

TIERS = {  # fixture: the tiers of a test that uses it (fixtures of test modules included)
    "ray_head": {"ray"},
    "head": {"ray", "e2e"},
    "ray_client": {"ray"},
    "run_overrides": {"ray", "e2e"},
    "vllm_config": {"vllm"},
    "vllm_judge": {"vllm"},
    "two_nodes": {"ray", "multinode"},
    "full_run": {"ray", "vllm", "e2e"},
    "user": {"ray", "vllm", "e2e"},
}
HEAD_CPUS, HEAD_GPUS = 12, 2  # logical: a sweep's two runs at once; one inner worker per GPU
# Ray's own detached actors: Ray Train makes one autoscaling coordinator per cluster, for all jobs after it
RAYS_OWN = {"_AutoscalingCoordinatorActor"}
STAMP = "SEAL_DIST_TEST_SESSION"  # in the environment of every process this session starts, and theirs

config.register()
os.environ.setdefault("WANDB_SILENT", "true")
os.environ[STAMP] = str(os.getpid())


def pytest_collection_modifyitems(items):
    for item in items:
        for tier in sorted(set().union(*(TIERS.get(name, set()) for name in item.fixturenames))):
            item.add_marker(tier)


def tiers_of(node) -> set[str]:
    return {mark.name for mark in node.iter_markers()} & set().union(*TIERS.values())


def refuse_ray(nodeid: str):
    def init(*args, **kwargs):
        raise RuntimeError(f"{nodeid} starts Ray, but uses none of the fixtures that put a test in the ray tier "
                           "(TIERS in tests/conftest.py): use one, so that `make test-fast` leaves it out")
    return init


def running() -> set[str]:
    """What is running for this session: the processes it started (by STAMP, however far they were reparented)
    other than the session's Ray head, and the actors alive on that head."""
    head_session = _HEAD["session"] if _HEAD else None
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        try:
            if pid == os.getpid() or f"{STAMP}={os.getpid()}".encode() not in environ.read_bytes().split(b"\0"):
                continue
            fields = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) != head_session and not any(f"ray::{a}" in cmd for a in RAYS_OWN):
            found.add(f"process {pid}: {cmd[:100]}")
    if _HEAD:
        for actor in list_actors(address=_HEAD["dashboard"], filters=[("state", "=", "ALIVE")],
                                 raise_on_missing_output=False):
            if actor.class_name not in RAYS_OWN:
                found.add(f"actor {actor.class_name} {actor.actor_id}")
    return found


def check_nothing_left(before: set[str], what: str) -> None:
    try:
        wait_for(lambda: not running() - before, 60, what)
    except TimeoutError:
        pytest.fail(f"left running after {what}: " + "; ".join(sorted(running() - before)), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_by_the_module(request):
    before = running()
    yield
    check_nothing_left(before, f"the module {request.module.__name__}")


@pytest.fixture(autouse=True)
def tier_guard(request, monkeypatch):
    """The fast tier cannot start Ray; a test of another tier leaves nothing running."""
    if not tiers_of(request.node):
        monkeypatch.setattr(ray, "init", refuse_ray(request.node.nodeid))
        yield
        return
    before = running()
    yield
    check_nothing_left(before, request.node.nodeid)


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
    """The fast CPU demo's config (the transformers sampler), for a test that places the parts itself."""
    return compose_config(*FAST, f"model.cache_dir={model_cache}", f"run_dir={tmp_path / 'run'}", HF_SAMPLER,
                          *overrides)


@pytest.fixture(scope="session")
def vllm_config(model_cache, tiny_model):
    """fast_config(path, *overrides) with vLLM's sampler, for the tests about the sampler."""
    return lambda path, *overrides: fast_config(path, model_cache, "sampler.engine=vllm", *overrides)


@pytest.fixture(scope="session")
def run_overrides(ray_head) -> list[str]:
    """The settings that make a whole run join the session's Ray head and sample with transformers."""
    return [f"resources.address={ray_head['address']}", HF_SAMPLER]


@pytest.fixture(scope="session")
def run_config(run_overrides, model_cache, tiny_model):
    """fast_config(path, *overrides) for a whole run, on the session's Ray head."""
    return lambda path, *overrides: fast_config(path, model_cache, *run_overrides, *overrides)


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


_HEAD: dict = {}  # the session's Ray head, once started


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head for the session (`ray start --head`, as on a cluster): HEAD_CPUS logical CPUs and HEAD_GPUS
    logical GPUs, the dashboard and job server, free ports and a private temp dir. Yields its GCS `address`
    (what `ray.init` and `resources.address` join) and `dashboard` (what jobs are submitted to)."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent = free_ports(4)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={gcs}", f"--num-cpus={HEAD_CPUS}",
           f"--num-gpus={HEAD_GPUS}", "--include-dashboard=true", f"--dashboard-port={dashboard}",
           f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}", f"--temp-dir={temp}",
           "--disable-usage-stats"]
    start = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        address = f"http://127.0.0.1:{dashboard}"
        wait_for(lambda: _answers(address), 60, f"the job server at {address}")
        _HEAD.update(address=f"127.0.0.1:{gcs}", dashboard=address, session=start.pid)
        yield dict(_HEAD)
    finally:
        _HEAD.clear()
        stop_session(start.pid)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def head(ray_head) -> str:
    """The session head's dashboard address, where jobs are submitted."""
    return ray_head["dashboard"]


@pytest.fixture(scope="module")
def ray_client(ray_head):
    """This process joined to the session's head (for the module), for tests that place actors themselves."""
    ray.init(address=ray_head["address"], runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _answers(address: str) -> bool:
    try:
        JobSubmissionClient(address)
        return True
    except Exception:
        return False
