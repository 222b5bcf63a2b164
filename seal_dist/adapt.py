"""`seal-dist adapt`: the trained model takes in new documents by itself. For each document in turn it writes
a self-edit, applies it as a bounded LoRA update (conf/guard) and keeps or rolls it back; the output folder
holds every kept update as a PEFT adapter, the merged weights on request, and a report line per document.

    seal-dist adapt experiment=demo_cpu adapt.policy=runs/<time> adapt.documents=new_docs/ adapt.output=adapted
        guard=bounded

Output folder (each document's results are written before the next starts; `adapt.resume=true` continues):
    config.yaml       the resolved config
    report.jsonl      one record per document: self-edit, sequences, losses, norms, probes, decision
    updates/<i>/      the kept update of document i (PEFT adapter)
    model/            the adapted model's merged weights (adapt.save_merged=true), written at the end
    state.json        how many documents are done (written last, atomically)
"""

import json
import shutil
from pathlib import Path

import hydra
import peft
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from seal_dist import config, models
from seal_dist.config import UserError
from seal_dist.policy import Policy
from seal_dist.rundir import policy_at, write_atomic
from seal_dist.selfupdate import SelfUpdater, check_lengths, locality_probes
from seal_dist.tasks.interface import create
from seal_dist.tasks.knowledge.task import Context, KnowledgeTask, load_file
from seal_dist.train import CONF_DIR


def load_documents(path: str) -> list[Context]:
    """A SEAL-schema JSON file (its questions become probes), or a folder of .txt files: one document each,
    titled by its file name, in name order, without questions."""
    source = Path(path)
    if source.is_file():
        return load_file(path)
    if not source.is_dir():
        raise UserError(f"adapt.documents={path}: no such file or folder")
    files = sorted(source.glob("*.txt"))
    if not files:
        raise UserError(f"adapt.documents={path}: the folder has no .txt documents")
    docs = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"adapt.documents: cannot read {f}: {e}") from e
        if not text:
            raise UserError(f"adapt.documents: {f} is empty")
        docs.append(Context(f.stem, f.stem.replace("_", " "), text, ()))
    return docs


def load_adapted(cfg: DictConfig, task: KnowledgeTask, docs: list[Context]):
    """The policy's model with its adapter merged in (the base model without adapt.policy), and its tokenizer;
    documents too long for it are refused."""
    base = models.resolve_path(cfg.model, task)
    policy = Policy(0, base, None) if cfg.adapt.policy is None else policy_at(cfg.adapt.policy, "adapt.policy", base, 1)
    tokenizer = models.load_tokenizer(policy.model)
    check_lengths(task, tokenizer, docs, cfg.sampler.max_tokens, cfg.sampler.max_model_len)
    model = models.load_model(policy.model, "float32", "cpu")
    if policy.adapter is not None:
        model = peft.PeftModel.from_pretrained(model, policy.adapter).merge_and_unload()
    return model, tokenizer


def knowledge_task(cfg: DictConfig, command: str) -> KnowledgeTask:
    task = create(cfg)
    if not isinstance(task, KnowledgeTask):
        raise UserError(f"{command}: documents are taken in by knowledge incorporation; task={cfg.task.name} has none")
    return task


class OutputDir:
    def __init__(self, root: str, resume: bool):
        self.root = Path(root)
        self.report = self.root / "report.jsonl"
        self.state = self.root / "state.json"
        self.updates = self.root / "updates"
        exists = self.root.exists() and any(self.root.iterdir())
        if exists and not resume:
            raise UserError(f"adapt.output={root} exists: give another folder, or adapt.resume=true to continue it")
        if resume and not self.state.is_file():
            raise UserError(f"adapt.output={root}: nothing to continue (no state.json of an adapt)")

    def create(self) -> None:
        self.updates.mkdir(parents=True, exist_ok=True)

    def done(self) -> list[dict]:
        """The records of the documents already done; what a kill left of the next one is removed."""
        if not self.state.is_file():
            return []
        count = json.loads(self.state.read_text())["done"]
        records = [json.loads(line) for line in self.report.read_text().splitlines()][:count]
        write_atomic(self.report, "".join(json.dumps(r) + "\n" for r in records))
        for folder in self.updates.iterdir():
            if not folder.name.isdigit() or int(folder.name) >= count:
                shutil.rmtree(folder)
        return records

    def update_dir(self, index: int) -> Path:
        return self.updates / f"{index:03d}"

    def commit(self, record: dict) -> None:
        with self.report.open("a") as f:
            f.write(json.dumps(record) + "\n")
        write_atomic(self.state, json.dumps({"done": record["index"] + 1}))

    def save_merged(self, model, tokenizer) -> None:
        tmp, final = self.root / "model.tmp", self.root / "model"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)


def adapt(cfg: DictConfig) -> list[dict]:
    a = cfg.adapt
    for key in ("documents", "output"):
        if a[key] is None:
            raise UserError(f"adapt.{key} is required (see `seal-dist adapt --help`)")
    task = knowledge_task(cfg, "seal-dist adapt")
    docs = load_documents(a.documents)
    out = OutputDir(a.output, a.resume)
    model, tokenizer = load_adapted(cfg, task, docs)
    out.create()  # once every input has been checked
    rule = cfg.guard.forgetting
    locality = locality_probes(model, tokenizer, task, task.load(rule.locality_split), rule, cfg.inner.eval_batch_size)
    updater = SelfUpdater(model, tokenizer, task, cfg, locality)
    records = out.done()
    for record in records:
        if record["decision"] != "rejected":
            updater.load_kept(docs[record["index"]], out.update_dir(record["index"]))
    write_atomic(out.root / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    console = Console()
    for i in range(len(records), len(docs)):
        record = updater.step(docs[i], i, a.seed + i, out.update_dir(i))
        out.commit(record)
        records.append(record)
        console.print(f"[{i + 1}/{len(docs)}] {docs[i].title}: {record['decision']}"
                      + (f" ({record['reason']})" if record.get("reason") else ""))
    if a.save_merged:
        out.save_merged(updater.merged(), tokenizer)
    print_report(console, records, out.root)
    return records


def print_report(console: Console, records: list[dict], root: Path) -> None:
    table = Table(title=f"seal-dist adapt: {root}")
    for column in ("document", "decision", "loss", "norm (total)", "retention", "locality changed"):
        table.add_column(column)
    for r in records:
        loss = f"{r['loss_before']:.3f} -> {r['loss_after']:.3f}" if "loss_after" in r else "-"
        retention = "-" if r.get("retention_after") is None else f"{r['retention_before']:.2f} -> {r['retention_after']:.2f}"
        table.add_row(r["title"], r["decision"] + (f": {r['reason']}" if r.get("reason") else ""), loss,
                      f"{r['norm_total']:.3f}" if "norm_total" in r else "-", retention,
                      f"{r['locality_changed']:.0%}" if "locality_changed" in r else "-")
    console.print(table)
    console.print(f"report: {root / 'report.jsonl'}")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with config.user_errors("seal-dist adapt"):
        config.validate(cfg)
        adapt(cfg)


if __name__ == "__main__":
    main()
