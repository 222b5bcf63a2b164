"""`seal-dist continual-table <multirun folder>`: the points of a `seal-dist continual -m ...` sweep in one
table. Points that differ only in the tiny model's pretraining seed and the world seed are cells of one
setting; each arm's measures are the mean and sd over those cells (a cell's value: its mean over sequences).
Writes table.json into the folder.

    seal-dist continual -m experiment=continual_cpu model.tiny.seed=0,1 task.world.seed=1000,1001,1002 \\
        guard.forgetting.max_changed=0.05,0.5,1.0 continual.sequences=2 hydra.sweep.dir=multirun/continual
    seal-dist continual-table multirun/continual
"""

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from seal_dist.config import UserError, user_errors
from seal_dist.continual import MEASURES, formatted

CELL_KEYS = ("model.tiny.seed", "task.world.seed")  # what varies between the cells of one setting


def read_points(folder: Path) -> dict[str, list[dict]]:
    """Each setting (the overrides that differ between the sweep's points, other than the cell keys) and the
    continual.json of each of its cells."""
    points = []
    for point in sorted(p for p in folder.iterdir() if (p / "continual.json").is_file()):
        overrides = yaml.safe_load((point / ".hydra" / "overrides.yaml").read_text())
        points.append((dict(o.split("=", 1) for o in overrides), json.loads((point / "continual.json").read_text())))
    if not points:
        raise UserError(f"{folder}: no point of a continual sweep (no <n>/continual.json)")
    swept = [k for k in points[0][0] if k not in CELL_KEYS and len({o.get(k) for o, _ in points}) > 1]
    settings = defaultdict(list)
    for overrides, result in points:
        settings[" ".join(f"{k}={overrides[k]}" for k in swept) or "(one setting)"].append(result)
    return settings


def summarize(settings: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for setting, cells in settings.items():
        for arm in ("unbounded", "bounded"):
            row = {"setting": setting, "arm": arm, "cells": len(cells)}
            for key in MEASURES:
                values = [c[arm][key]["mean"] for c in cells if c[arm][key]["mean"] is not None]
                row[key] = {"mean": statistics.mean(values) if values else None,
                            "sd": statistics.pstdev(values) if values else None}
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="seal-dist continual-table", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the sweep's folder (hydra.sweep.dir)")
    args = parser.parse_args()
    with user_errors("seal-dist continual-table"):
        folder = Path(args.folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        rows = summarize(read_points(folder))
    (folder / "table.json").write_text(json.dumps(rows, indent=2))
    table = Table(title=f"continual self-edits: mean ± sd over cells ({folder})")
    for column in ("setting", "arm", "cells", *(m.replace("_", " ") for m in MEASURES)):
        table.add_column(column)
    for r in rows:
        table.add_row(r["setting"], r["arm"], str(r["cells"]), *formatted(r))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
