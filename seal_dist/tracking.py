"""What a person watching the run sees: W&B scalars and self-edit tables, the console progress display and
the per-round table. Everything is logged from the driver."""

import hashlib

import wandb
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text
from rich.table import Table

from seal_dist.config import LoggerConfig

COLUMNS = ("round", "policy_version", "reward_mean", "reward_max", "baseline_mean", "kept", "learner_loss",
           "heldout_baseline", "heldout_accuracy")


class Tracker:
    def __init__(self, cfg: LoggerConfig, run_dir: str, config: dict, show_progress: bool, verbose: bool):
        self.cfg = cfg
        self.console = Console(log_path=False)  # a round line is the time and the round, not tracking.py:NN
        self.run = wandb.init(
            mode=cfg.mode.value, project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags), dir=run_dir,
            config=config, id=_run_id(run_dir), resume="allow", settings=wandb.Settings(silent=not verbose),
        )
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
            disable=not show_progress,
        )
        self.progress.start()
        self._bar = None

    def phase(self, round_: int | None, name: str, total: int) -> None:
        """A new progress bar, labelled with its round (None: not part of a training round)."""
        if self._bar is not None:
            self.progress.remove_task(self._bar)
        self._bar = self.progress.add_task(name if round_ is None else f"[bold]round {round_}[/] {name}", total=total)

    def advance(self, done: int) -> None:
        self.progress.update(self._bar, completed=done)

    def log_round(self, row: dict, samples: list[dict]) -> None:
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        scalars.update({f"timing_s/{k}": v for k, v in row["timing_s"].items()})
        if self.cfg.num_table_rows > 0:
            table = wandb.Table(columns=["round", "context_id", "sample", "reward", "baseline", "self_edit"])
            for s in samples[: self.cfg.num_table_rows]:
                table.add_data(row["round"], s["context_id"], s["sample"], s["reward"], s["baseline"], s["self_edit"])
            scalars["self_edits"] = table
        self.run.log(scalars, step=row["round"])
        self.console.log(f"round {row['round']}: " + ", ".join(f"{k}={_fmt(row[k])}" for k in COLUMNS[2:]))

    def log_final(self, final: dict) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in final.items()})

    def print_table(self, rounds: list[dict], final: dict | None) -> None:
        table = Table(title="SEAL rounds (rewards: accuracy after the update; held-out: the policy's own self-edits)")
        for header in ("round", "policy", "reward", "best", "baseline", "kept", "SFT loss", "held-out base",
                       "held-out acc"):
            table.add_column(header, justify="right")
        for row in rounds:
            table.add_row(*(_fmt(row[c]) for c in COLUMNS))
        if final is not None:
            table.add_row("final", str(final["policy_version"]), *[""] * 5,
                          _fmt(final["heldout_baseline"]), _fmt(final["heldout_accuracy"]))
        self.console.print(table)

    def print_eval(self, rows: list[dict], orderings: list[dict], confidence: float, out_dir: str) -> None:
        """The eval table (each row's accuracy, interval, updates and graded items), what each row's
        self-edits wrote or chose on average (the task's own columns), then the orderings."""
        level = f"{confidence:.0%}"
        table = Table(title=f"Accuracy after each update ({out_dir})")
        for header in ("update", "accuracy", f"{level} interval", "updates", "items"):
            table.add_column(header, justify="right")
        for r in rows:
            table.add_row(r["update"], _fmt(r["accuracy"]), _interval(r), str(r["updates"]), str(r["items"]))
        self.console.print(table)
        described = list(dict.fromkeys(k for r in rows for k in r if k not in EVAL_FIELDS))
        if described:
            table = Table(title="What the self-edits wrote or chose (means over the updates)")
            for header in ("update", *(k.replace("_", " ") for k in described)):
                table.add_column(header, justify="right")
            for r in rows:
                table.add_row(r["update"], *(_fmt(r.get(k, "-")) for k in described))
            self.console.print(table)
        table = Table(title=f"Orderings (paired bootstrap over contexts; significant: the {level} interval excludes 0)")
        for header in ("ordering", "gap", f"{level} interval", "significant"):
            table.add_column(header, justify="right")
        for o in orderings:
            table.add_row(f"{o['better']} > {o['worse']}", f"{o['gap']:+.3f}", _interval(o),
                          "yes" if o["significant"] else "no")
        self.console.print(table)

    def close(self) -> None:
        self.progress.stop()
        self.run.finish()
        wandb.teardown()  # W&B's service process ends with the run, also when the run was called in-process


class RateColumn(ProgressColumn):
    """Steps (jobs, pretraining steps) per second, once rich has measured it."""

    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.2f}/s", style="progress.data.speed")


EVAL_FIELDS = ("update", "accuracy", "ci_low", "ci_high", "updates", "items")  # a row's fields besides the task's


def _fmt(value) -> str:
    """A float to 3 decimals, or in scientific notation where that would hide it (a learning rate)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.1e}" if 0 < abs(value) < 0.01 else f"{value:.3f}"


def _interval(row: dict) -> str:
    return f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _run_id(run_dir: str) -> str:
    """A W&B run id derived from the run directory, so a resumed run continues the same W&B run."""
    return hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]
