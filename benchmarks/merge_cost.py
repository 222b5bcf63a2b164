"""Merged policy updates (learner.merge=true, the paper's way) against stacked ones (one adapter on the base
model, the default), side by side in one run: the same training run twice, the CPU demo's by default:

    .venv/bin/python benchmarks/merge_cost.py [--out runs/merge-cost] [hydra overrides...]

    e.g. rounds=2 (the default here), or experiment=... model.path=... on a GPU cluster

Prints, per round and in all, the seconds of each phase (sampling, inner loop, learner, sync: publishing the
new policy, where merged updates restart the sampler's engines; the inner workers reload the merged model at
their first job of the next round, inside "inner"), the run's wall time and the size of its policy folder, and
merged / stacked for each.
"""

import argparse
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from seal_dist import config, loop
from seal_dist.train import CONF_DIR

PHASES = ("sample", "inner", "learn", "sync", "total")


def ratio(a: float, b: float) -> str:
    return f"{b / a:.2f}" if a >= 0.05 else "-"  # a phase that did nothing (no self-edit kept) has no ratio


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run(out: Path, merge: bool, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=demo_cpu", "rounds=2", "progress=false", "logger=disabled",
                                           *overrides, f"learner.merge={str(merge).lower()}",
                                           f"run_dir={out / ('merged' if merge else 'stacked')}"])
    config.validate(cfg)
    start = time.perf_counter()
    summary = loop.train(cfg)
    wall = time.perf_counter() - start
    return {"rounds": [row["timing_s"] for row in summary["rounds"]], "wall": wall,
            "policy_mb": folder_bytes(Path(cfg.run_dir) / "policy") / 2**20,
            "accuracy": [row["heldout_accuracy"] for row in summary["rounds"]] + [summary["final"]["heldout_accuracy"]]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/merge-cost", help="where the two runs are written")
    args, overrides = parser.parse_known_args()
    config.register()
    out = Path(args.out).resolve()
    stacked, merged = run(out, False, overrides), run(out, True, overrides)

    table = Table(title="merged / stacked policy updates (seconds)")
    for column in ("", "stacked", "merged", "merged / stacked"):
        table.add_column(column, justify="right")
    for r, (a, b) in enumerate(zip(stacked["rounds"], merged["rounds"])):
        for phase in PHASES:
            table.add_row(f"round {r} {phase}", f"{a[phase]:.1f}", f"{b[phase]:.1f}", ratio(a[phase], b[phase]))
    for phase in PHASES:
        a, b = (sum(row[phase] for row in x["rounds"]) for x in (stacked, merged))
        table.add_row(f"all rounds {phase}", f"{a:.1f}", f"{b:.1f}", ratio(a, b))
    table.add_row("run wall time", f"{stacked['wall']:.1f}", f"{merged['wall']:.1f}", ratio(stacked["wall"], merged["wall"]))
    table.add_row("policy folder MiB", f"{stacked['policy_mb']:.1f}", f"{merged['policy_mb']:.1f}",
                  ratio(stacked["policy_mb"], merged["policy_mb"]))
    Console().print(table)
    print("held-out accuracy by round (the last: the final policy):",
          "stacked", " ".join(f"{a:.3f}" for a in stacked["accuracy"]),
          "| merged", " ".join(f"{a:.3f}" for a in merged["accuracy"]))


if __name__ == "__main__":
    main()
