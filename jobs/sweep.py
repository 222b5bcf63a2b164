#!/usr/bin/env python
"""Submit a Hydra sweep to a Ray cluster as one Ray job per point: each point is a training run of its own,
scheduled by the cluster beside the others.

    python jobs/sweep.py --address http://HEAD:8265 --name lr -- experiment=squad_paper inner.lr=1e-4,3e-4 seed=0,1

The arguments after `--` are Hydra overrides in sweep syntax (`a=1,2`, `range(...)`, `choice(...)`), expanded
as Hydra's basic sweeper does (every combination, in order). Point n runs `seal_dist.train` with its
overrides, `hydra.run.dir=<dir>/<n>` (default ~/seal-dist-runs/multirun/<name> on the head) and
`logger.group=<name>`, so its W&B run is grouped with the sweep's; its job is `<name>-<n>`. With `--wait` the
script follows every job to its end and fails if any did.
"""

import argparse
import itertools
import shlex
import subprocess
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from ray.job_submission import JobStatus, JobSubmissionClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submit import submit, train_command  # noqa: E402


def points(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweep overrides' values, beside the plain overrides."""
    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        choices.append([f"{key}={v}" for v in override.sweep_string_iterator()] if override.is_sweep_override()
                       else [override.input_line])
    return [list(point) for point in itertools.product(*choices)]


def ray_job(*args: str, address: str | None) -> subprocess.CompletedProcess:
    """`ray job ARGS`, its output captured."""
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", *args]
    return subprocess.run(cmd + ([] if address is None else ["--address", address]), capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265")
    parser.add_argument("--name", required=True, help="the sweep's name: job ids <name>-<n>, the W&B group")
    parser.add_argument("--dir", help="the sweep's folder on the head (default ~/seal-dist-runs/multirun/<name>)")
    parser.add_argument("--wait", action="store_true", help="follow every job to its end")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="-- then Hydra overrides in sweep syntax")
    args = parser.parse_args(argv)
    overrides = args.overrides[1:] if args.overrides[:1] == ["--"] else args.overrides
    if flags := [o for o in overrides if o.startswith("-")]:
        parser.error(f"only Hydra overrides go after --, got {flags}")
    folder = args.dir or f"${{oc.env:HOME}}/seal-dist-runs/multirun/{args.name}"
    jobs = []
    for n, point in enumerate(points(overrides)):
        entrypoint = train_command([*point, f"hydra.run.dir={folder}/{n}", f"logger.group={args.name}"])
        print(f"{args.name}-{n}: {shlex.join(entrypoint)}", flush=True)
        if submit(entrypoint, f"{args.name}-{n}", args.address, wait=False) != 0:
            return 1
        jobs.append(f"{args.name}-{n}")
    if not args.wait:
        return 0
    failed = []
    for job in jobs:
        logs = ray_job("logs", "--follow", job, address=args.address).stdout  # returns when the job ends
        if JobSubmissionClient(args.address).get_job_status(job) != JobStatus.SUCCEEDED:
            failed.append(job)
            print(f"{job} failed; the end of its log:\n" + "\n".join(logs.splitlines()[-20:]), flush=True)
    print(f"{len(jobs) - len(failed)} of {len(jobs)} points succeeded" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
