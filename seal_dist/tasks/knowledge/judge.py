"""Grading answers with an LLM judge, as the SEAL reference grades knowledge incorporation: any OpenAI-compatible
endpoint through the `openai` client, or a vLLM OpenAI server that seal-dist starts on the cluster. Verdicts are
cached in SQLite (keyed by the judge model, its parameters and the filled-in prompt), so that no answer is graded
twice across rounds, runs and evaluations; a failed request is never cached."""

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import ray

from seal_dist.config import JudgeConfig, JudgeServerConfig, UserError

TEMPERATURE = 0.0  # the judge answers greedily: a verdict is a function of its prompt, which the cache relies on


class JudgeError(UserError):
    """The judge endpoint failed past its retries (the run stops; what was graded is in the run directory)."""


def verdict(reply: str) -> bool:
    """The reference's rule: correct iff the reply contains "yes" and not "no"."""
    reply = reply.lower()
    return "yes" in reply and "no" not in reply


class Judge:
    def __init__(self, cfg: JudgeConfig):
        if cfg.base_url is None and cfg.serve is None:
            raise UserError("task.grader.judge: set base_url (an OpenAI-compatible endpoint) or serve (a vLLM server)")
        if cfg.concurrency < 1 or cfg.retries < 0:
            raise UserError(f"task.grader.judge: concurrency must be at least 1 and retries at least 0, got "
                            f"{cfg.concurrency} and {cfg.retries}")
        if cfg.api_key_env is not None and cfg.api_key_env not in os.environ:
            raise UserError(f"task.grader.judge.api_key_env: the environment variable {cfg.api_key_env} is not set")
        self.cfg, self.calls, self.cache_hits = cfg, 0, 0
        path = Path(cfg.cache).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)  # the grading threads share it under _lock
        self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        self._lock, self._client, self._server, self.base_url = threading.Lock(), None, None, cfg.base_url

    def grade(self, items: list[tuple[str, str, str]]) -> list[float]:
        """1.0 or 0.0 for each (question, gold answer, prediction); an empty prediction is wrong without a call."""
        prompts = [self.cfg.prompt.format(question=q, gold=g, pred=p) if p.strip() else None for q, g, p in items]
        replies = {p: self._cached(p) for p in dict.fromkeys(prompts) if p is not None}
        todo = [p for p, reply in replies.items() if reply is None]
        self.cache_hits += len(replies) - len(todo)
        if todo:
            client = self._connect()
            with ThreadPoolExecutor(min(self.cfg.concurrency, len(todo))) as pool:
                replies.update(zip(todo, pool.map(lambda p: self._ask(client, p), todo)))
        return [0.0 if p is None else float(verdict(replies[p])) for p in prompts]

    def _key(self, prompt: str) -> str:
        fields = {"model": self.cfg.model, "temperature": TEMPERATURE, "max_tokens": self.cfg.max_tokens, "prompt": prompt}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def _cached(self, prompt: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM verdicts WHERE key = ?", (self._key(prompt),)).fetchone()
        return None if row is None else row[0]

    def _ask(self, client: openai.OpenAI, prompt: str) -> str:
        try:
            response = client.chat.completions.create(
                model=self.cfg.model, messages=[{"role": "user", "content": prompt}], max_tokens=self.cfg.max_tokens,
                temperature=TEMPERATURE)
        except openai.OpenAIError as e:
            raise JudgeError(f"the judge endpoint {self.base_url} failed after {self.cfg.retries} retries: "
                             f"{type(e).__name__}: {e}") from e
        reply = response.choices[0].message.content or ""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", (self._key(prompt), reply))
            self._db.commit()
            self.calls += 1
        return reply

    def close(self) -> None:
        """Stops the judge's vLLM server, if this judge started one."""
        if self._server is not None:
            ray.get(self._server.stop.remote())
            self._server, self._client, self.base_url = None, None, self.cfg.base_url

    def _connect(self) -> openai.OpenAI:
        """The client, once; the first call starts the judge's vLLM server when one is configured."""
        if self._client is None:
            if self.base_url is None:
                serve = self.cfg.serve
                self._server = ray.remote(JudgeServer).options(num_gpus=serve.num_gpus, num_cpus=1).remote(
                    serve, self.cfg.model)
                try:
                    self.base_url = ray.get(self._server.ready.remote(serve.startup_timeout_s))
                except ray.exceptions.RayTaskError as e:
                    raise JudgeError(f"the judge's vLLM server ({serve.model_path}) did not start: {e.cause}") from e
                print(f"judge: {self.cfg.model} served at {self.base_url}", flush=True)
            key = "none" if self.cfg.api_key_env is None else os.environ[self.cfg.api_key_env]
            self._client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=self.cfg.retries,
                                         timeout=self.cfg.timeout_s)
        return self._client


class JudgeServer:
    """A Ray actor that runs a vLLM OpenAI server on its node (its output goes to the actor's log files). `stop`
    ends the server's whole process group (its engine-core process too); should the actor die first, the server
    gets SIGTERM (its engine-core process may then outlive it)."""

    def __init__(self, cfg: JudgeServerConfig, served_name: str):
        port = cfg.port or _free_port()
        self.url = f"http://{ray.util.get_node_ip_address()}:{port}/v1"
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model_path,
                   "--served-model-name", served_name, "--host", "0.0.0.0", "--port", str(port), *cfg.args]
        self.process = subprocess.Popen(command, env={**os.environ, **cfg.env_vars}, preexec_fn=_die_with_parent,
                                        start_new_session=True)  # its own process group: stop() ends all of it

    def ready(self, timeout_s: float) -> str:
        """The server's URL once its /health answers; raises if it exits or does not answer in time."""
        health, deadline = self.url.removesuffix("/v1") + "/health", time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health, timeout=5) as answer:
                    if answer.status == 200:
                        return self.url
            except OSError:
                pass  # not listening yet
            try:
                code = self.process.wait(timeout=1)  # the pause between health checks, or the server's exit
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"the judge's vLLM server exited with code {code} before answering (its output: "
                               "the run's logs/, this actor's worker-*.err)")
        raise TimeoutError(f"the judge's vLLM server at {self.url} did not answer /health in {timeout_s:.0f} s")

    def stop(self) -> None:
        """SIGTERM to the server's process group; SIGKILL to what is left of it (its engine-core process does not
        end with the server) once the server has exited, or after a minute."""
        os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when the actor's process ends (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
