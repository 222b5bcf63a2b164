"""`seal-dist grid`: a demonstration measured over several builds of the tiny model and several worlds.

The tiny model's weights differ between processors (CPU kernels round differently, and pretraining amplifies
it), so one build's result says little about another machine's. A grid stands in for other machines: each
cell is a pretraining seed (another build) x a world seed (other people and passages, or other grid tasks),
run as a full `seal-dist train` and `seal-dist eval` in its own folder (logs in train.log / eval.log; a cell
already evaluated is kept, a cell cut short resumes). The summary counts the cells where the trained policy's
self-edits beat round 0's, the gaps' mean and sd, and whether the eval table's rows (whatever the task's) are
in increasing order in the mean over cells.

    seal-dist grid grids/demo experiment=demo_cpu                       # 3 x 3 cells
    seal-dist grid grids/arc --pretrain-seeds 0,1 experiment=demo_arc   # 2 x 3 cells
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean, stdev

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from seal_dist.rundir import RunDir

ROUND0, POLICY = "round 0", "policy"


def column(update: str) -> str:
    """A row of the eval table as a column of the grid: the policies' rows by their role, since the trained
    policy's version can differ between cells."""
    if update == "round-0 self-edits":
        return ROUND0
    return POLICY if update.startswith("policy ") else update


def cell_dir(root: Path, pretrain_seed: int, world_seed: int) -> Path:
    return root / f"pretrain{pretrain_seed}-world{world_seed}"


def run_cell(folder: Path, overrides: list[str], pretrain_seed: int, world_seed: int) -> None:
    """Trains (or resumes) and evaluates one cell; a failing step raises with the name of its log."""
    seeds = [*overrides, f"model.tiny.seed={pretrain_seed}", f"task.world.seed={world_seed}"]
    train = ([f"resume={folder}"] if (folder / "checkpoint.json").exists() else [*seeds, f"hydra.run.dir={folder}"])
    steps = (("train", "seal_dist.train", train),
             ("eval", "seal_dist.evaluate", [*seeds, f"eval.run={folder}", f"hydra.run.dir={folder / 'eval'}"]))
    folder.mkdir(parents=True, exist_ok=True)
    for name, module, args in steps:
        log = folder / f"{name}.log"
        with log.open("w") as out:
            command = [sys.executable, "-m", module, "progress=false", *args]
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{folder.name}: seal-dist {name} failed (exit {done.returncode}); see {log}")


def cell_result(folder: Path, pretrain_seed: int, world_seed: int) -> dict:
    """A finished cell's accuracy per eval row, the policy-over-round-0 ordering and the policy's own
    no-update held-out score per round (its forgetting)."""
    evaluation = json.loads((folder / "eval" / "eval.json").read_text())
    summary = RunDir(str(folder)).summary()
    no_update = [r["heldout_baseline"] for r in summary["rounds"]] + [summary["final"]["heldout_baseline"]]
    accuracy = {column(r["update"]): r["accuracy"] for r in evaluation["rows"]}
    gap = next((o for o in evaluation["orderings"] if column(o["better"]) == POLICY and column(o["worse"]) == ROUND0),
               None)
    trained = gap is not None
    if not trained:  # the learner kept nothing: the final policy is round 0's (the eval has no row of its own)
        accuracy = {name: a for row, a in accuracy.items() for name in ((row, POLICY) if row == ROUND0 else (row,))}
        gap = {"better": POLICY, "worse": ROUND0, "gap": 0.0, "ci_low": 0.0, "ci_high": 0.0, "significant": False}
    return {"cell": folder.name, "pretrain_seed": pretrain_seed, "world_seed": world_seed, "accuracy": accuracy,
            "policy_gap": gap, "policy_trained": trained, "policy_no_update": no_update}


def summarize(cells: list[dict]) -> dict:
    """Over the cells: each row's mean and sd, the policy's gap over round 0 (count of wins, mean, sd), the
    cells where round 0 beats the row before it, and whether the rows increase in the mean."""
    columns = list(cells[0]["accuracy"])
    gaps = [c["accuracy"][POLICY] - c["accuracy"][ROUND0] for c in cells]
    means = {name: mean(c["accuracy"][name] for c in cells) for name in columns}
    before = columns[columns.index(ROUND0) - 1]
    return {
        "cells": len(cells),
        "mean": means,
        "sd": {name: stdev(c["accuracy"][name] for c in cells) if len(cells) > 1 else 0.0 for name in columns},
        "policies_trained": sum(c["policy_trained"] for c in cells),
        "policy_wins": sum(g > 0 for g in gaps),
        "policy_wins_significant": sum(c["policy_gap"]["significant"] for c in cells),
        "gap_mean": mean(gaps),
        "gap_sd": stdev(gaps) if len(gaps) > 1 else 0.0,
        "round0_over": before,
        "round0_wins": sum(c["accuracy"][ROUND0] > c["accuracy"][before] for c in cells),
        "orderings_hold_in_mean": all(means[a] < means[b] for a, b in zip(columns, columns[1:])),
    }


def print_grid(console: Console, cells: list[dict], overall: dict) -> None:
    columns = list(overall["mean"])
    table = Table(title="Accuracy after each update, per cell (pretraining seed x world seed)")
    for header in ("pretrain seed", "world", *columns, "policy - round 0", "significant",
                   "policy no-update, v0 -> final"):
        table.add_column(header, justify="right")
    for c in cells:
        gap = c["accuracy"][POLICY] - c["accuracy"][ROUND0]
        table.add_row(str(c["pretrain_seed"]), str(c["world_seed"]), *(f"{c['accuracy'][n]:.3f}" for n in columns),
                      f"{gap:+.3f}", "yes" if c["policy_gap"]["significant"] else "no",
                      f"{c['policy_no_update'][0]:.3f} -> {c['policy_no_update'][-1]:.3f}")
    table.add_row("mean (sd)", "", *(f"{overall['mean'][n]:.3f} ({overall['sd'][n]:.3f})" for n in columns),
                  f"{overall['gap_mean']:+.3f} ({overall['gap_sd']:.3f})", "", "")
    console.print(table)
    console.print(f"a policy trained in {overall['policies_trained']} of {overall['cells']} cells (elsewhere the "
                  "learner kept nothing: the policy is round 0's); "
                  f"policy > round 0 in {overall['policy_wins']} of {overall['cells']} cells "
                  f"({overall['policy_wins_significant']} significant); mean gap {overall['gap_mean']:+.3f}, "
                  f"sd {overall['gap_sd']:.3f}; round 0 > {overall['round0_over']} in {overall['round0_wins']}; "
                  f"{' < '.join(columns)} in the mean: {'yes' if overall['orderings_hold_in_mean'] else 'no'}")


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seal-dist grid", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the grid's folder: a subfolder per cell, grid.json")
    parser.add_argument("--pretrain-seeds", type=seed_list, default="0,1,2",
                        help="model.tiny.seed values (default 0,1,2)")
    parser.add_argument("--world-seeds", type=seed_list, default="1000,1001,1002",
                        help="task.world.seed values (default 1000,1001,1002)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every cell's train and eval")
    args = parser.parse_intermixed_args(argv)
    console = Console()
    grid = [(p, w) for p in args.pretrain_seeds for w in args.world_seeds]
    cells = []
    with Progress(console=console) as progress:
        bar = progress.add_task("grid", total=len(grid))
        for p, w in grid:
            folder = cell_dir(args.out, p, w)
            if not (folder / "eval" / "eval.json").exists():
                progress.update(bar, description=f"{folder.name}: train + eval ({folder}/*.log)")
                run_cell(folder, args.overrides, p, w)
            cells.append(cell_result(folder, p, w))
            scores = ", ".join(f"{n} {a:.3f}" for n, a in cells[-1]["accuracy"].items())
            progress.console.print(f"{folder.name}: {scores}")
            progress.advance(bar)
    overall = summarize(cells)
    (args.out / "grid.json").write_text(json.dumps({"cells": cells, "summary": overall}, indent=2))
    print_grid(console, cells, overall)


if __name__ == "__main__":
    main()
