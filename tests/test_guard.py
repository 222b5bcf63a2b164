"""Bounded self-updates on the test-sized tiny model and real PEFT adapters: trust anchors, norm bounds, the
forgetting guard's rollback, `seal-dist adapt`'s output folder and report, and the continual experiment."""

import json

import numpy as np
import peft
import pytest
import torch
from omegaconf import OmegaConf

from seal_dist import guard, models
from seal_dist.adapt import adapt
from seal_dist.config import UserError
from seal_dist.learner.sft import PolicyTrainer
from seal_dist.continual import MEASURES, continual, measures
from seal_dist.continual_table import read_points, summarize
from seal_dist.selfupdate import accuracies, locality_probes
from seal_dist.tasks.interface import create
from tests.conftest import compose_config, fast_config

ADAPT = ["sampler.max_tokens=24", "inner.epochs=2", "guard.forgetting.locality_questions=6",
         "guard.forgetting.locality_known=false"]  # the briefly trained test model knows few answers


def seal_file(tmp_path, n: int, cfg) -> str:
    """The first n held-out passages of the synthetic world as a SEAL-schema file."""
    records = [{"title": c.title, "context": c.text,
                "questions": [{"question": q.question, "answer": q.answer} for q in c.questions]}
               for c in create(cfg).load("heldout")[:n]]
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(records))
    return str(path)


def adapt_config(tmp_path, model_cache, n_docs: int, *overrides: str, output: str = "out"):
    base = fast_config(tmp_path, model_cache)
    return fast_config(tmp_path, model_cache, *ADAPT, f"adapt.documents={seal_file(tmp_path, n_docs, base)}",
                       f"adapt.output={tmp_path / output}", *overrides)


def test_anchors_match_names_and_layer_ranges():
    anchors = compose_config("run_dir=x", "guard.anchors.modules=[*.mlp.*]", "guard.anchors.layers=[[2,3]]").guard.anchors
    assert guard.anchored("model.layers.0.mlp.up_proj", anchors)
    assert guard.anchored("model.layers.3.self_attn.q_proj", anchors)
    assert not guard.anchored("model.layers.1.self_attn.q_proj", anchors)
    assert not guard.anchored("model.layers.12.self_attn.q_proj", anchors)


def test_norms_are_the_frobenius_norm_and_clipping_bounds_them(tiny_model):
    model = models.load_model(tiny_model, "float32", "cpu")
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora, adapter_name="u")
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_()
    norms = guard.update_norms(model, "u")
    module = model.base_model.model.model.layers[0].self_attn.q_proj
    direct = torch.linalg.norm(module.scaling["u"] * module.lora_B["u"].weight.double() @ module.lora_A["u"].weight.double())
    assert norms["model.layers.0.self_attn.q_proj"] == pytest.approx(direct.item(), rel=1e-9)
    assert guard.clip(model, "u", max_module=0.5, max_total=1.0)
    clipped = guard.update_norms(model, "u")
    assert max(clipped.values()) <= 0.5 and guard.total_norm(clipped) <= 1.0
    assert not guard.clip(model, "u", max_module=0.5, max_total=1.0)  # already within: nothing rescaled


def test_the_learner_bounds_its_own_policy_update(tmp_path, tiny_model):
    cfg = compose_config("run_dir=x", "experiment=demo_cpu", "learner.guard.anchors.layers=[[0,0]]",
                         "learner.guard.max_total_norm=0.01", "learner.epochs=1").learner
    trainer = PolicyTrainer(tiny_model, "float32", cfg, str(tmp_path), torch_threads=1, seed=0)
    update = trainer.update([("Passage: a", "1. b"), ("Passage: c", "1. d")], version=1, seed=0)
    assert update["clipped"] and update["norm"] <= 0.01
    saved = peft.utils.load_peft_weights(update["policy"].adapter)
    assert saved and not any(".layers.0." in key for key in saved)  # the anchored layer has no adapter


def test_bounded_adapt_keeps_anchors_bit_identical_and_norms_within_bounds(tmp_path, model_cache):
    cfg = adapt_config(tmp_path, model_cache, 3, "guard=bounded", "guard.max_module_norm=0.02",
                       "guard.max_total_norm=0.1", "guard.forgetting.enabled=false", "adapt.save_merged=true")
    before = models.load_model(models.resolve_path(cfg.model, create(cfg)), "float32", "cpu")
    records = adapt(cfg)
    assert [r["decision"] for r in records] == ["clipped"] * 3  # the bounds are tight: every update was rescaled
    assert all(r["norm_max_module"] <= 0.02 and r["norm_total"] <= 0.1 for r in records)
    assert all(r["norm_total_unclipped"] > 0.1 for r in records)
    after = models.load_model(str(tmp_path / "out" / "model"), "float32", "cpu")
    layer0 = [f"model.layers.0.{m}" for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")]
    assert guard.fingerprint(after, layer0) == guard.fingerprint(before, layer0)  # the anchored first layer
    assert not torch.equal(after.model.layers[1].self_attn.q_proj.weight, before.model.layers[1].self_attn.q_proj.weight)
    report = [json.loads(line) for line in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    assert report == json.loads(json.dumps(records)) and sorted(p.name for p in (tmp_path / "out" / "updates").iterdir()) == ["000", "001", "002"]


def test_a_rolled_back_update_leaves_the_model_exactly_as_it_was(tmp_path, model_cache):
    # lr 0.5 wrecks the tiny model: its answers to the unrelated questions change, and the guard refuses that
    cfg = adapt_config(tmp_path, model_cache, 2, "guard=bounded", "guard.max_module_norm=null", "guard.max_total_norm=null",
                       "guard.forgetting.max_changed=0.0", "inner.lr=0.5",
                       "adapt.save_merged=true")
    before = models.load_model(models.resolve_path(cfg.model, create(cfg)), "float32", "cpu")
    records = adapt(cfg)
    assert [r["decision"] for r in records] == ["rejected"] * 2
    assert all("locality answers changed" in r["reason"] and r["scale"] == 0.5 ** 3 for r in records)  # shrunk, then refused
    after = models.load_model(str(tmp_path / "out" / "model"), "float32", "cpu")
    assert guard.fingerprint(after, None) == guard.fingerprint(before, None)
    assert not any((tmp_path / "out" / "updates").iterdir())
    assert len((tmp_path / "out" / "report.jsonl").read_text().splitlines()) == 2  # every rejection is reported


def test_an_update_whose_loss_diverges_is_rolled_back(tmp_path, model_cache):
    cfg = adapt_config(tmp_path, model_cache, 1, "inner.lr=1e30", "inner.epochs=3", "adapt.save_merged=true")
    before = models.load_model(models.resolve_path(cfg.model, create(cfg)), "float32", "cpu")
    (record,) = adapt(cfg)
    assert record["decision"] == "rejected" and record["reason"] == "non-finite training loss"
    after = models.load_model(str(tmp_path / "out" / "model"), "float32", "cpu")
    assert guard.fingerprint(after, None) == guard.fingerprint(before, None)


def test_adapt_continues_an_interrupted_sequence_where_it_stopped(tmp_path, model_cache):
    full = adapt(adapt_config(tmp_path, model_cache, 3, output="full"))
    out = tmp_path / "full"
    (out / "state.json").write_text(json.dumps({"done": 1}))  # as if killed after the first document
    resumed = adapt(adapt_config(tmp_path, model_cache, 3, "adapt.resume=true", output="full"))
    assert [r["self_edit"] for r in resumed] == [r["self_edit"] for r in full]
    assert [r["loss_after"] for r in resumed] == pytest.approx([r["loss_after"] for r in full], rel=1e-5)
    assert len((out / "report.jsonl").read_text().splitlines()) == 3


def test_stacked_updates_equal_merged_ones(tmp_path, model_cache):
    merged = adapt(adapt_config(tmp_path, model_cache, 2, output="merged"))
    stacked = adapt(adapt_config(tmp_path, model_cache, 2, "adapt.compose=stack", output="stacked"))
    assert [r["self_edit"] for r in stacked] == [r["self_edit"] for r in merged]
    assert [r["loss_after"] for r in stacked] == pytest.approx([r["loss_after"] for r in merged], rel=1e-4)


def test_adapt_refuses_bad_input_naming_it(tmp_path, model_cache):
    cfg = adapt_config(tmp_path, model_cache, 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier work")
    with pytest.raises(UserError, match="exists: give another folder, or adapt.resume=true"):
        adapt(cfg)
    assert (tmp_path / "out" / "keep.txt").read_text() == "earlier work"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("   \n")
    with pytest.raises(UserError, match="a.txt is empty"):
        adapt(fast_config(tmp_path, model_cache, f"adapt.documents={docs}", f"adapt.output={tmp_path / 'o1'}"))
    (docs / "a.txt").write_text("word " * 3000)
    with pytest.raises(UserError, match="document a .*exceeds sampler.max_model_len=2048: refused"):
        adapt(fast_config(tmp_path, model_cache, f"adapt.documents={docs}", f"adapt.output={tmp_path / 'o2'}"))
    assert not (tmp_path / "o2").exists()  # nothing is written before every input is checked
    (docs / "a.txt").write_text("A short document.")
    with pytest.raises(UserError, match="adapt.policy=.*neither a PEFT adapter folder"):
        adapt(fast_config(tmp_path, model_cache, f"adapt.documents={docs}", f"adapt.output={tmp_path / 'o3'}",
                          f"adapt.policy={docs}"))
    with pytest.raises(UserError, match="adapt.documents is required"):
        adapt(fast_config(tmp_path, model_cache))
    with pytest.raises(UserError, match="all .* modules that inner.lora.target_modules names are anchored"):
        adapt(adapt_config(tmp_path, model_cache, 1, "guard.anchors.modules=[*]", output="o4"))


def test_locality_probes_are_questions_the_unadapted_model_answers_correctly(tmp_path, model_cache):
    cfg = fast_config(tmp_path, model_cache, "guard.forgetting.locality_questions=1000")
    task = create(cfg)
    model = models.load_model(models.resolve_path(cfg.model, task), "float32", "cpu")
    tokenizer = models.load_tokenizer(models.resolve_path(cfg.model, task))
    candidates = task.load("pretraining")[:60]
    every = locality_probes(model, tokenizer, task, candidates, OmegaConf.merge(cfg.guard.forgetting, {"locality_known": False}), 64)
    known = locality_probes(model, tokenizer, task, candidates, cfg.guard.forgetting, 64)
    assert len(every) == sum(len(c.questions) for c in candidates) and all(len(p.questions) == 1 for p in every)
    assert {p.id for p in known} <= {p.id for p in every}
    assert accuracies(model, tokenizer, task, known, 64) == [1.0] * len(known)
    assert len(known) == sum(a == 1.0 for a in accuracies(model, tokenizer, task, every, 64))
    with pytest.raises(UserError, match="guard.forgetting: no locality probe found"):
        adapt(adapt_config(tmp_path, model_cache, 1, "guard=bounded", "guard.forgetting.locality_questions=0"))


def test_continual_measures_on_a_known_matrix():
    nan = np.nan
    matrix = np.array([[0.0, 0.0, 0.0],
                       [0.8, nan, nan],
                       [0.4, 0.6, nan],
                       [0.2, 0.6, 1.0]])
    records = [{"decision": "kept", "norm_total": 1.0, "locality_changed": 0.1},
               {"decision": "clipped", "norm_total": 2.0, "locality_changed": 0.2},
               {"decision": "rejected", "reason": "x"}]
    m = measures(matrix, records)
    assert m["retention"] == pytest.approx((0.2 / 0.8 + 0.6 / 0.6) / 2)
    assert m["backward_transfer"] == pytest.approx(((0.2 - 0.8) + (0.6 - 0.6)) / 2)
    assert m["new_document_accuracy"] == pytest.approx((0.8 + 0.6 + 1.0) / 3)
    assert m["locality"] == pytest.approx(0.8) and m["max_norm"] == 2.0
    assert m["clipped"] == 1 and m["rejected"] == 1


def test_continual_writes_both_arms_matrices(tmp_path, model_cache):
    cfg = fast_config(tmp_path, model_cache, *ADAPT, "guard=bounded", "continual.documents=2", "continual.sequences=1")
    result = continual(cfg)
    written = json.loads((tmp_path / "run" / "continual.json").read_text())
    assert set(written) >= {"unbounded", "bounded"} and (tmp_path / "run" / "continual.png").is_file()
    for arm in ("unbounded", "bounded"):
        mean = written[arm]["mean"]
        assert len(mean) == 3 and all(len(row) == 2 for row in mean)
        assert mean[1][1] is None and mean[2][1] is not None  # lower triangle only
        assert result[arm]["locality"]["mean"] is not None


def test_continual_table_groups_a_sweep_by_setting(tmp_path):
    def point(n: int, overrides: list[str], retention: float) -> None:
        (tmp_path / str(n) / ".hydra").mkdir(parents=True)
        (tmp_path / str(n) / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        arm = {key: {"mean": retention, "sd": 0.0} for key in MEASURES}
        (tmp_path / str(n) / "continual.json").write_text(json.dumps({"unbounded": arm, "bounded": arm}))

    point(0, ["model.tiny.seed=0", "task.world.seed=1000", "guard.forgetting.max_changed=0.05"], 0.2)
    point(1, ["model.tiny.seed=1", "task.world.seed=1000", "guard.forgetting.max_changed=0.05"], 0.6)
    point(2, ["model.tiny.seed=0", "task.world.seed=1000", "guard.forgetting.max_changed=1.0"], 0.1)
    rows = summarize(read_points(tmp_path))
    strict = [r for r in rows if r["setting"] == "guard.forgetting.max_changed=0.05"]
    assert [r["arm"] for r in strict] == ["unbounded", "bounded"] and strict[0]["cells"] == 2
    assert strict[1]["retention"] == pytest.approx({"mean": 0.4, "sd": 0.2})
    assert len(rows) == 4
    with pytest.raises(UserError, match="no point of a continual sweep"):
        read_points(tmp_path / "0")
