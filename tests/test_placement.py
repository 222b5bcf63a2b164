"""Placement on a two-node Ray cluster (ray.cluster_utils.Cluster, logical GPUs): the sampler engines, the
inner-loop workers and the learner run on the nodes that `resources.placement` names, and a multi-node run
without `resources.train_storage` is refused with the reason."""

import pytest
import ray
from ray.cluster_utils import Cluster

from seal_dist.cluster import Components
from seal_dist.policy import Policy
from seal_dist.config import UserError
from seal_dist.tasks.knowledge.task import KnowledgeTask
from tests.conftest import fast_config


@pytest.fixture(scope="module")
def two_nodes():
    """A head with the custom resource `sampler_node`, and a node with 2 logical GPUs and `train_node`."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "resources": {"sampler_node": 1}})
    train = cluster.add_node(num_cpus=3, num_gpus=2, resources={"train_node": 1})
    ray.init(address=cluster.address, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield cluster.head_node.node_id, train.node_id
    ray.shutdown()
    cluster.shutdown()


def node_of(actor) -> str:
    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_each_part_runs_on_the_nodes_its_placement_names(two_nodes, tmp_path, model_cache, tiny_model):
    head, train = two_nodes
    cfg = fast_config(tmp_path, model_cache, "sampler.engine=hf", "inner.use_gpu=true", "inner.num_workers=2",
                      "inner.adapters_per_step=1", "+resources.placement.sampler.sampler_node=0.01",
                      "+resources.placement.inner.train_node=0.01", "+resources.placement.learner.train_node=0.01",
                      f"resources.train_storage={tmp_path / 'shared'}")
    parts = Components(cfg, tiny_model, str(tmp_path / "policy"), Policy(0, tiny_model, None))
    try:
        task = KnowledgeTask(cfg.task)
        jobs = [task.make_job(f"job-{i}", ctx, "1. A fact.", 0, seed=i) for i, ctx in enumerate(task.load("train")[:4])]
        assert sum(len(batch) for batch in parts.run_jobs(jobs, on_progress=lambda done: None)) == len(jobs)
        workers = ray.get(parts.pool.board.workers.remote())
        assert {w["node"] for w in workers.values()} == {train} and sorted(w["gpu_ids"][0] for w in workers.values()) == [0, 1]
        assert {node_of(engine) for engine in parts.sampler.engines} == {head}
        assert node_of(parts.learner) == train
    finally:
        parts.shutdown()


def test_a_multi_node_run_needs_shared_train_storage(two_nodes, tmp_path, model_cache, tiny_model):
    cfg = fast_config(tmp_path, model_cache)
    assert cfg.resources.train_storage is None
    with pytest.raises(UserError, match="the Ray cluster has 2 nodes: set resources.train_storage"):
        Components(cfg, tiny_model, None, Policy(0, tiny_model, None))
