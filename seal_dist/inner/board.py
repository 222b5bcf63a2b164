"""The job board: one async Ray actor that hands inner-loop jobs to workers and collects their results.

Jobs are leased, up to a worker's number of adapters at a time (consecutive jobs of one policy version):
every lease held by a worker that restarts is handed out again, and results are keyed by job id, so a
repeated job is harmless.

Poison jobs: a job that failed (it raised, or its loss was not finite) or whose worker died while holding
it is handed out again, alone, up to `retries` more times; then its last failure is its result (recorded
as failed, never selected), and the jobs leased with it are unaffected.
"""

import asyncio
import dataclasses
from collections import Counter, deque

import ray

from seal_dist.inner.job import InnerJob, InnerResult, failed
from seal_dist.policy import Policy


@ray.remote(num_cpus=0)
class JobBoard:
    def __init__(self, retries: int):
        self._retries = retries
        self._queue: deque[InnerJob] = deque()
        self._leases: dict[str, tuple[int, InnerJob]] = {}  # job id -> (worker, job)
        self._attempts: Counter[str] = Counter()  # job id -> runs that failed
        self._alone: set[str] = set()  # jobs that failed once: leased one at a time
        self._done: set[str] = set()  # every job id ever completed
        self._results: dict[str, InnerResult] = {}  # completed and not yet taken
        self._policies: dict[int, Policy] = {}  # every version published
        self._generation: dict[int, int] = {}  # worker rank -> incarnation
        self._workers: dict[int, dict] = {}  # worker rank -> what its current incarnation reported
        self._closed = False
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def publish_policy(self, policy: Policy) -> None:
        self._policies[policy.version] = policy

    async def put(self, jobs: list[InnerJob]) -> None:
        self._queue.extend(j for j in jobs if j.job_id not in self._done)
        await self._notify()

    async def lease(self, worker: int, generation: int, max_jobs: int) -> tuple[list[InnerJob], Policy] | None:
        """Up to `max_jobs` next jobs, all of the first one's policy version, and that policy; waits
        for one; None once the board is closed or when the caller is a stale incarnation of its worker (a
        dead process's call still pending here)."""
        async with self._changed:
            stale = lambda: self._generation[worker] != generation  # noqa: E731
            await self._changed.wait_for(lambda: self._queue or self._closed or stale())
            if self._closed or stale():
                return None
            jobs = [self._queue.popleft()]
            version, room = jobs[0].policy_version, 1 if jobs[0].job_id in self._alone else max_jobs
            while (self._queue and len(jobs) < room and self._queue[0].policy_version == version
                   and self._queue[0].job_id not in self._alone):
                jobs.append(self._queue.popleft())
            for job in jobs:
                self._leases[job.job_id] = (worker, job)
            return jobs, self._policies[version]

    async def complete(self, results: list[InnerResult]) -> None:
        for result in results:
            _, job = self._leases.pop(result.job_id, (None, None))
            if result.job_id in self._done or job is None:
                continue  # a stale incarnation's result, or a repeat
            if result.error is None or not self._again(job):
                self._finish(result)
        await self._notify()

    def _again(self, job: InnerJob) -> bool:
        """Counts a failed run of the job; True (and the job queued again, alone) while it has retries left."""
        self._attempts[job.job_id] += 1
        if self._attempts[job.job_id] > self._retries:
            return False
        self._alone.add(job.job_id)
        self._queue.appendleft(job)
        return True

    def _finish(self, result: InnerResult) -> None:
        self._done.add(result.job_id)
        self._results[result.job_id] = dataclasses.replace(result, attempts=self._attempts[result.job_id] + (
            result.error is None))

    async def register(self, worker: int, info: dict) -> int:
        """Called by a worker when it starts: requeues the jobs leased to earlier incarnations of the same
        rank and returns this incarnation's generation."""
        self._generation[worker] = self._generation.get(worker, -1) + 1
        self._workers[worker] = {**info, "generation": self._generation[worker]}
        lost = [job for w, job in self._leases.values() if w == worker]
        for job in lost:
            del self._leases[job.job_id]
        for job in reversed(lost):
            if not self._again(job):
                self._finish(failed(job, worker, f"its worker died in each of {self._attempts[job.job_id]} runs"))
        await self._notify()
        return self._generation[worker]

    async def wait(self, job_ids: list[str], timeout: float) -> int:
        """Waits until all `job_ids` are done or `timeout` seconds pass; returns how many are done."""
        def count() -> int:
            return sum(1 for j in job_ids if j in self._done)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: count() == len(job_ids)), timeout)
            except asyncio.TimeoutError:
                pass
            return count()

    async def take(self, job_ids: list[str]) -> list[InnerResult]:
        """The finished results among `job_ids` (each returned once, then dropped from the board)."""
        return [self._results.pop(j) for j in job_ids if j in self._results]

    async def workers(self) -> dict[int, dict]:
        return dict(self._workers)

    async def leases(self) -> dict[str, int]:
        """Job id -> the worker holding it."""
        return {job_id: worker for job_id, (worker, _) in self._leases.items()}

    async def close(self) -> None:
        self._closed = True
        await self._notify()
