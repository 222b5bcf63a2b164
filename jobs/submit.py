#!/usr/bin/env python
"""Submit a seal-dist training run to a running Ray cluster (`ray job submit`).

    python jobs/submit.py --address http://HEAD:8265 -- experiment=squad_paper model.path=/models/Qwen2.5-7B \\
        seed=1 logger=wandb_online
    python jobs/submit.py --no-wait --name squad-s1 -- seed=1      # returns once the job is accepted

Everything after `--` goes to `python -m seal_dist.train` on the cluster: Hydra overrides and flags (`--cfg job`,
`-m` ...). Unless you set them, `resources=cluster` is added, so the driver joins the cluster, and the run
directory is ~/seal-dist-runs/<time> on the head node (resume with `-- resume=/home/<user>/seal-dist-runs/<time>`).

The job runs in a copy of this checkout (uploaded without .venv, .git, runs, caches), so local edits run too.
These variables are passed to the job when set here: WANDB_API_KEY, WANDB_ENTITY, WANDB_PROJECT, WANDB_MODE,
WANDB_BASE_URL. The logger config group still decides the run's mode and project (logger=wandb_online,
logger.project=...); the API key is stored with the job on the cluster, so on a shared cluster run `wandb login`
on the nodes instead.

The address defaults to $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS, as for `ray job`. A head with token
authentication (RAY_AUTH_MODE=token, or unset with a token in ~/.ray/auth_token on the head) also needs, where
you run this, RAY_AUTH_MODE=token and the cluster's token in $RAY_AUTH_TOKEN or ~/.ray/auth_token.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXCLUDES = [".venv", ".git", "runs", "multirun", "outputs", "wandb", ".cache", ".pytest_cache", "__pycache__",
            "*.egg-info", ".whl"]
CLUSTER_SETTINGS = {  # resolved by Hydra on the cluster
    "resources": "cluster",
    "hydra.run.dir": "${oc.env:HOME}/seal-dist-runs/${now:%Y-%m-%d_%H-%M-%S}",
    "hydra.sweep.dir": "${oc.env:HOME}/seal-dist-runs/multirun/${now:%Y-%m-%d_%H-%M-%S}",
}
WANDB_VARS = ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_MODE", "WANDB_BASE_URL")


def runtime_env(working_dir: Path = REPO, environ=os.environ) -> dict:
    """The job's code (the checkout) and the W&B settings of the submitting shell."""
    env_vars = {k: environ[k] for k in WANDB_VARS if environ.get(k)}
    return {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": env_vars}


def train_command(args: list[str]) -> list[str]:
    """`python -m seal_dist.train ARGS` plus the cluster settings ARGS leave out: `resources=cluster`, and run
    directories on the head node's disk rather than in the job's working directory (a temporary copy). They go
    next to ARGS' first override, as Hydra's parser rejects overrides split by a flag."""
    chosen = {a.split("=", 1)[0].lstrip("+~") for a in args}
    extra = [f"{k}={v}" for k, v in CLUSTER_SETTINGS.items() if k not in chosen]
    at = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return ["python", "-m", "seal_dist.train", *args[:at], *extra, *args[at:]]


def submit(entrypoint: list[str], name: str, address: str | None = None, wait: bool = True,
           working_dir: Path = REPO, environ=os.environ) -> int:
    """Runs `ray job submit`; the runtime env goes through a private file so no secret shows in a process list."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:  # created with mode 0600
        json.dump(runtime_env(working_dir, environ), f)
        f.flush()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--submission-id", name,
               "--runtime-env", f.name]
        cmd += [] if address is None else ["--address", address]
        cmd += [] if wait else ["--no-wait"]
        return subprocess.run([*cmd, "--", *entrypoint]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265")
    parser.add_argument("--name", default=f"seal-dist-{time.strftime('%Y%m%d-%H%M%S')}",
                        help="the job's submission id (unique on the cluster)")
    parser.add_argument("--no-wait", action="store_true", help="return once submitted instead of following the logs")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then arguments for seal_dist.train")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    entrypoint = train_command(train_args)
    addr = [] if args.address is None else ["--address", args.address]
    print(f"submitting {args.name}: {shlex.join(entrypoint)}\n"
          f"  logs: {shlex.join(['ray', 'job', 'logs', '-f', *addr, args.name])}  (Ctrl-C here leaves the job running)\n"
          f"  stop: {shlex.join(['ray', 'job', 'stop', *addr, args.name])}", flush=True)
    try:
        return submit(entrypoint, args.name, args.address, wait=not args.no_wait)
    except KeyboardInterrupt:
        print(f"\nstopped following {args.name}; the job keeps running")
        return 130

if __name__ == "__main__":
    sys.exit(main())
