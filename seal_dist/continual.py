"""`seal-dist continual`: the SEAL paper's continual experiment, without and with bounds on the updates. Each
sequence draws `continual.documents` held-out documents; the model takes them in one after another (as
`seal-dist adapt` does) and after each update answers the evaluation questions of every document so far
(its retention probes held apart): a (K+1) x K lower-triangular accuracy matrix whose row 0 is the unadapted
model. Writes continual.json (mean and sd matrices, retention, backward transfer, locality, norms, clipped
and rejected updates, per arm) and continual.png (the two mean matrices).

    seal-dist continual experiment=continual_cpu
    seal-dist continual experiment=continual_paper model.path=/ckpt/Qwen2.5-7B adapt.policy=/ckpt/seal-policy
"""

import copy
import json
import math
import random
import warnings
from pathlib import Path

import hydra
import matplotlib
import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from seal_dist import config
from seal_dist.adapt import knowledge_task, load_adapted
from seal_dist.selfupdate import SelfUpdater, locality_probes, split_questions
from seal_dist.train import CONF_DIR

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

UNBOUNDED = {"anchors": {"modules": [], "layers": []}, "max_module_norm": None, "max_total_norm": None,
             "forgetting": {"enabled": False}}  # the arm without bounds: what SEAL does


def sequence_matrix(updater: SelfUpdater, docs: list, seed: int) -> tuple[np.ndarray, list[dict]]:
    """Takes in the documents in order; the accuracy matrix (row 0: before any update; row k: after the k-th,
    on documents 0..k-1; NaN above) and each step's record."""
    probes = updater.cfg.guard.forgetting.probes_per_document
    evaluated = [split_questions(d, probes)[1] for d in docs]
    matrix = np.full((len(docs) + 1, len(docs)), np.nan)
    matrix[0] = updater.answer(evaluated)
    records = []
    for k, doc in enumerate(docs):
        records.append(updater.step(doc, k, seed + k, None))
        matrix[k + 1, : k + 1] = updater.answer(evaluated[: k + 1])
    return matrix, records


def measures(matrix: np.ndarray, records: list[dict]) -> dict:
    """Of one sequence: each document's retention (its accuracy after the last update over its accuracy right
    after its own; NaN where that was 0), backward transfer (the mean change from right after its own update
    to the end, over all but the last document), accuracy on each new document, locality after the last
    update, the largest update norm, and the numbers of clipped and rejected updates."""
    k = matrix.shape[1]
    own, last = matrix[np.arange(1, k + 1), np.arange(k)], matrix[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        retention = np.where(own > 0, last / own, np.nan)
    norms = [r["norm_total"] for r in records if "norm_total" in r]
    changed = [r["locality_changed"] for r in records if "locality_changed" in r and r["decision"] != "rejected"]
    return {"retention": float(_nanmean(retention[:-1])),
            "backward_transfer": float(np.mean((last - own)[:-1])) if k > 1 else math.nan,
            "new_document_accuracy": float(np.mean(own)),
            "locality": 1.0 - (changed[-1] if changed else 0.0),
            "max_norm": max(norms, default=0.0),
            "clipped": sum(r["decision"] == "clipped" for r in records),
            "rejected": sum(r["decision"] == "rejected" for r in records)}


def continual(cfg: DictConfig) -> dict:
    task = knowledge_task(cfg, "seal-dist continual")
    heldout = task.load("heldout")
    c = cfg.continual
    if c.documents > len(heldout):
        raise config.UserError(f"continual.documents={c.documents}: the held-out split has {len(heldout)} documents")
    sequences = [random.Random(c.seed + i).sample(heldout, c.documents) for i in range(c.sequences)]
    model, tokenizer = load_adapted(cfg, task, [d for s in sequences for d in s])
    rule = cfg.guard.forgetting
    locality = locality_probes(model, tokenizer, task, task.load(rule.locality_split), rule, cfg.inner.eval_batch_size)
    arms = {"unbounded": OmegaConf.merge(cfg, {"guard": UNBOUNDED}), "bounded": cfg}
    console, result = Console(), {}
    for arm, arm_cfg in arms.items():
        matrices, rows, steps = [], [], []
        for i, docs in enumerate(sequences):
            updater = SelfUpdater(copy.deepcopy(model), tokenizer, task, arm_cfg, locality)
            matrix, records = sequence_matrix(updater, docs, cfg.adapt.seed + 1000 * i)
            matrices.append(matrix)
            rows.append(measures(matrix, records))
            steps.append(records)
            console.print(f"{arm}: sequence {i + 1}/{len(sequences)} done, retention {rows[-1]['retention']:.2f}")
        stacked = np.stack(matrices)
        result[arm] = {"mean": _listed(_nanmean(stacked, 0)), "sd": _listed(_nanmean(stacked, 0, np.nanstd)),
                       **{key: _mean_sd([r[key] for r in rows]) for key in rows[0]},
                       "sequences": [{"measures": r, "matrix": _listed(m), "steps": s}
                                     for r, m, s in zip(rows, matrices, steps)]}
    out = Path(cfg.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "continual.json").write_text(json.dumps(
        {"documents": c.documents, "sequences": c.sequences, "guard": config.to_container(cfg.guard), **result},
        indent=2))
    heat_maps({arm: np.array(r["mean"], dtype=float) for arm, r in result.items()}, out / "continual.png")
    print_table(console, result, out)
    return result


def _nanmean(values: np.ndarray, axis=None, reduce=np.nanmean):
    """The reduction over the finite values; NaN, without a warning, where there are none (above the diagonal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values, axis=axis) if values.size else math.nan


def _listed(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(x) else float(x) for x in row] for row in matrix]


def _mean_sd(values: list[float]) -> dict:
    finite = [v for v in values if not math.isnan(v)]
    return {"mean": float(np.mean(finite)) if finite else None, "sd": float(np.std(finite)) if finite else None}


def heat_maps(matrices: dict[str, np.ndarray], path: Path) -> None:
    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.5), squeeze=False)
    for ax, (arm, matrix) in zip(axes[0], matrices.items()):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{arm}: accuracy on document j after update i")
        ax.set_xlabel("document j")
        ax.set_ylabel("updates applied i")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MEASURES = ("retention", "backward_transfer", "new_document_accuracy", "locality", "max_norm", "clipped", "rejected")


def formatted(row: dict) -> list[str]:
    """A row's measures as table cells, `mean ± sd`."""
    return ["-" if row[k]["mean"] is None else f"{row[k]['mean']:.3f} ± {row[k]['sd']:.3f}" for k in MEASURES]


def print_table(console: Console, result: dict, out: Path) -> None:
    table = Table(title="continual self-edits (mean ± sd over sequences)")
    for column in ("arm", *(m.replace("_", " ") for m in MEASURES)):
        table.add_column(column)
    for arm, r in result.items():
        table.add_row(arm, *formatted(r))
    console.print(table)
    console.print(f"written: {out / 'continual.json'}, {out / 'continual.png'}")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with config.user_errors("seal-dist continual"):
        config.validate(cfg)
        continual(cfg)


if __name__ == "__main__":
    main()
