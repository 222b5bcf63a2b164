"""Typed configuration schema, registered with Hydra's ConfigStore, its checks, and how a user's mistake is
reported.

Every field is typed here and valued in exactly one YAML file under `conf/`; the schema holds no
defaults, so a missing value, an unknown key or a wrong type fails at start-up naming the key.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class Metric(str, Enum):
    exact_match = "exact_match"
    f1 = "f1"
    judge = "judge"  # an LLM judge's yes/no, as the SEAL reference grades (task.grader.judge)


class AnswerSpan(str, Enum):
    """The part of a generation graded as the answer."""

    line = "line"  # its first non-empty line
    sentence = "sentence"  # that line up to the end of its first sentence (a cloze's completion)


class Engine(str, Enum):
    vllm = "vllm"
    hf = "hf"


class InnerEngineKind(str, Enum):
    batched = "batched"  # K adapters per forward/backward (seal_dist/inner/batched.py)
    sequential = "sequential"  # one PEFT adapter at a time, as the reference (seal_dist/inner/sequential.py)
    full = "full"  # every weight trained, one job at a time (CPT v2; seal_dist/inner/sequential.py FullEngine)


class EvalMode(str, Enum):
    """How `seal-dist eval` applies each row's self-edits."""

    single = "single"  # one update per passage and self-edit (the paper's single-passage setting)
    cpt = "cpt"  # continued pretraining: ONE update on every passage's self-edits (and each passage once)


class Schedule(str, Enum):
    """The learning rate over an inner-loop update's steps."""

    linear = "linear"  # linear decay to 0 (the knowledge reference's)
    cosine = "cosine"  # cosine decay to 0 after a linear warm-up (the ARC reference's)


class WandbMode(str, Enum):
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class WorldConfig:
    """The synthetic knowledge world (used when a task's data is `synthetic`)."""

    seed: int = MISSING
    num_train: int = MISSING
    num_heldout: int = MISSING
    attributes: list[str] = MISSING  # what passages state facts about: birthplace, year, trade, instrument, pet
    facts_per_passage: int = MISSING


@dataclass
class PromptConfig:
    name: str = MISSING
    template: str = MISSING  # knowledge: fields {title}, {context}; ARC: field {demonstrations}


@dataclass
class KnowledgePretrainingConfig:
    """The tiny model's pretraining corpus for knowledge incorporation."""

    world: WorldConfig = field(default_factory=WorldConfig)  # pretraining people, disjoint from the task's
    readers: int = MISSING  # further people seen only as a passage and a self-edit: they teach reading
    copy_drills: int = MISSING  # random lists of names and values, repeated: they teach induction


@dataclass
class JudgeServerConfig:
    """A vLLM OpenAI server seal-dist starts on the cluster (a Ray actor) to serve the judge."""

    model_path: str = MISSING  # the judge's checkpoint folder
    num_gpus: float = MISSING  # the server actor's GPU share
    port: int = MISSING  # on the node it runs on; 0: a free one
    args: list[str] = MISSING  # further `vllm.entrypoints.openai.api_server` arguments
    env_vars: dict[str, str] = MISSING
    startup_timeout_s: float = MISSING


@dataclass
class JudgeConfig:
    """An LLM judge behind any OpenAI-compatible endpoint (the `openai` client's chat completions)."""

    base_url: Optional[str] = MISSING  # e.g. https://api.openai.com/v1; null: the server `serve` starts
    serve: Optional[JudgeServerConfig] = None
    model: str = MISSING  # the model name the endpoint serves
    api_key_env: Optional[str] = MISSING  # the environment variable that holds the API key; null: none
    prompt: str = MISSING  # fields {question}, {gold}, {pred}; correct iff the reply says "yes" and not "no"
    max_tokens: int = MISSING
    concurrency: int = MISSING  # requests in flight at once
    retries: int = MISSING  # per request, with the client's exponential back-off
    timeout_s: float = MISSING  # per request
    cache: str = MISSING  # SQLite file of verdicts, keyed by model, parameters and prompt; shared across runs


@dataclass
class GraderConfig:
    kind: Metric = MISSING
    judge: Optional[JudgeConfig] = None  # kind=judge


@dataclass
class KnowledgeTaskConfig:
    name: str = MISSING  # "knowledge"
    train_data: str = MISSING  # "synthetic" or a JSON file in the SEAL reference schema
    heldout_data: str = MISSING  # "synthetic" or a JSON file in the SEAL reference schema
    world: WorldConfig = field(default_factory=WorldConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    question_template: str = MISSING  # fields: {title}, {question}
    answer_template: str = MISSING  # fields: {question}
    grader: GraderConfig = field(default_factory=GraderConfig)
    answer_span: AnswerSpan = MISSING
    max_answer_tokens: int = MISSING
    max_sequences: Optional[int] = MISSING  # the first this many of a self-edit's sequences train; null: all
    implications_only: bool = MISSING  # train on the text after an "Implications:" line only (the newer reference)
    pretraining: KnowledgePretrainingConfig = field(default_factory=KnowledgePretrainingConfig)


@dataclass
class ArcDataConfig:
    """An ARC-AGI challenges file and its solutions file (or both `synthetic`: the grid world)."""

    challenges: str = MISSING
    solutions: str = MISSING
    tasks: Optional[list[str]] = MISSING  # these task ids, in this order; null: every task of the file


@dataclass
class AugmentationConfig:
    """How a self-edit's training set is built from the leave-one-out and leave-two-out problems of the
    demonstrations (the reference's caps)."""

    max_side: int = MISSING  # problems with a larger grid are dropped (30)
    max_tokens: int = MISSING  # problems with more tokens are dropped (8192)
    max_examples: int = MISSING  # the training set is shuffled and capped (250)
    colour_permutations: int = MISSING  # copies of each problem under a random colour permutation (0 kept)
    order_permutations: int = MISSING  # copies with the demonstrations in a random order


@dataclass
class OracleConfig:
    """The grid of configurations whose best, per task, is `seal-dist eval`'s oracle row."""

    augmentations: list[list[str]] = MISSING  # families switched on, per configuration
    strategies: list[str] = MISSING  # train_using_output_tokens | train_using_all_tokens
    learning_rates: list[float] = MISSING
    epochs: list[int] = MISSING


@dataclass
class GridWorldConfig:
    """The seeded synthetic grid world (used when a split's data is `synthetic`)."""

    seed: int = MISSING
    num_train: int = MISSING
    num_heldout: int = MISSING
    families: list[str] = MISSING  # the transformations its tasks are drawn from (seal_dist/tasks/arc/world.py)
    side: list[int] = MISSING  # grid heights and widths drawn from [low, high]
    colours: int = MISSING  # colours per task besides the background 0
    demos: int = MISSING  # demonstrations per task (one test input each)


@dataclass
class ArcPretrainingConfig:
    """The tiny model's pretraining corpus for ARC: problems of the grid world's pretraining families."""

    world: GridWorldConfig = field(default_factory=GridWorldConfig)  # its tasks are solved in the corpus
    self_edits: int = MISSING  # self-edit prompts, each followed by a random configuration: the round-0 policy
    learning_rates: list[float] = MISSING  # those configurations' learning rates, drawn uniformly
    epochs: list[int] = MISSING  # and epochs


@dataclass
class ArcTaskConfig:
    name: str = MISSING  # "arc"
    train: ArcDataConfig = field(default_factory=ArcDataConfig)
    heldout: ArcDataConfig = field(default_factory=ArcDataConfig)
    world: GridWorldConfig = field(default_factory=GridWorldConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    chat_template: str = MISSING  # wraps the prompt (field {prompt}), e.g. in the model's chat format
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    lr_bounds: list[float] = MISSING  # a self-edit's learning rate is clamped into [low, high]
    epoch_bounds: list[int] = MISSING  # and its epochs
    max_steps: int = MISSING  # cost guard: epochs x examples / inner.batch_size above this trains nothing (375)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    max_answer_tokens: int = MISSING
    pretraining: ArcPretrainingConfig = field(default_factory=ArcPretrainingConfig)


@dataclass
class TinyModelConfig:
    """Architecture and pretraining of the project's own tiny Qwen2 model (its corpus comes from the task)."""

    vocab_size: int = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    intermediate_size: int = MISSING
    max_position: int = MISSING
    pretrain_steps: int = MISSING
    pretrain_batch_size: int = MISSING
    pretrain_seq_len: int = MISSING
    pretrain_lr: float = MISSING
    seed: int = MISSING


@dataclass
class ModelConfig:
    path: Optional[str] = MISSING  # a Hugging Face causal-LM folder; null: build the tiny model
    tiny: Optional[TinyModelConfig] = MISSING
    cache_dir: str = MISSING  # where built models are kept, keyed by their spec
    dtype: str = MISSING  # float32 | bfloat16 | float16


@dataclass
class LoraConfig:
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: list[str] = MISSING


@dataclass
class SamplerConfig:
    engine: Engine = MISSING
    num_engines: int = MISSING
    gpus_per_engine: float = MISSING
    num_samples: int = MISSING  # K self-edits per context
    temperature: float = MISSING
    top_p: float = MISSING
    max_tokens: int = MISSING
    heldout_temperature: float = MISSING  # sampling of the held-out self-edits
    parse_tries: int = MISSING  # a self-edit that does not parse is resampled, up to this many samples in all
    max_restarts: int = MISSING  # Ray restarts of an engine that dies (or calls lost to its errors) before the run fails
    # vLLM: each prompt samples from a seed of its own (the seed mixed with the prompt's hash); false: every prompt
    # from the same seed, so prompts whose samples hardly depend on them (ARC's configurations) get the same ones
    seed_per_prompt: bool = MISSING
    max_model_len: int = MISSING
    max_lora_rank: int = MISSING
    engine_kwargs: dict[str, Any] = MISSING  # passed to vllm.LLM as is
    env_vars: dict[str, str] = MISSING  # environment of the engine actors


@dataclass
class InnerConfig:
    engine: InnerEngineKind = MISSING
    adapters_per_step: int = MISSING  # jobs a worker leases and trains side by side (batched engine; 1: one at a time)
    num_workers: int = MISSING
    use_gpu: bool = MISSING
    max_failures: int = MISSING  # worker-group restarts before the run fails (leased jobs are redone)
    job_retries: int = MISSING  # runs again of a job that failed (raised, a non-finite loss, its worker died)
    repeats: int = MISSING  # S inner runs per self-edit, scores averaged
    lora: LoraConfig = field(default_factory=LoraConfig)
    lr: float = MISSING  # where the self-edit does not set it
    epochs: int = MISSING  # likewise
    schedule: Schedule = MISSING
    warmup_steps: int = MISSING
    warmup_ratio: float = MISSING  # or this fraction of an update's steps, where that is more (CPT v2: 0.03)
    batch_size: int = MISSING
    max_seq_len: int = MISSING
    pad_to: Optional[int] = MISSING  # EOS padding of every training sequence, trained on (the reference's quirk); null: none
    eval_batch_size: int = MISSING


class Compose(str, Enum):
    """How a kept self-update becomes part of the model the next one starts from."""

    merge = "merge"  # added into the weights, as the SEAL paper does
    stack = "stack"  # kept as a PEFT adapter of its own, all of them active together


@dataclass
class AnchorConfig:
    """Trust anchors: modules that no self-update touches (checked bit for bit after every update)."""

    modules: list[str] = MISSING  # fnmatch patterns of module names ("*.mlp.*")
    layers: list[list[int]] = MISSING  # [first, last] ranges of layer indices (inclusive)


@dataclass
class ForgettingConfig:
    """The forgetting guard: probes answered before and after every update, and when it is rolled back."""

    enabled: bool = MISSING  # roll back by the rules below (the probes are measured and reported either way)
    probes_per_document: int = MISSING  # each document's first questions, held apart as its retention probes
    tolerance: float = MISSING  # roll back when retention-probe accuracy falls by more than this
    locality_split: str = MISSING  # the task split whose questions are the locality probes: "train", "heldout", or
    # "pretraining" (knowledge the tiny model was pretrained on)
    locality_questions: int = MISSING  # how many (the split's first ones)
    locality_known: bool = MISSING  # only questions that the unadapted model answers correctly
    max_changed: float = MISSING  # roll back when more than this fraction of locality answers change
    shrink_tries: int = MISSING  # before rolling back, scale the update down this many times, re-probing each
    shrink_factor: float = MISSING  # by this factor each time


@dataclass
class BoundsConfig:
    """Trust anchors and norm bounds of a LoRA update; each off by its null or empty list."""

    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    max_module_norm: Optional[float] = MISSING  # bound on each module's ||scale * B @ A||_F, enforced by rescaling
    max_total_norm: Optional[float] = MISSING  # bound on the whole update's Frobenius norm, likewise


@dataclass
class GuardConfig(BoundsConfig):
    """Bounds on every self-update (ARCHITECTURE.md "Bounded self-updates"), and the forgetting guard."""

    forgetting: ForgettingConfig = field(default_factory=ForgettingConfig)


@dataclass
class LearnerConfig:
    top_k: int = MISSING  # self-edits kept per context (ReST-EM E-step)
    min_gain: Optional[float] = MISSING  # keep only rewards above baseline + min_gain; null: no threshold
    min_advantage: Optional[float] = MISSING  # keep only rewards above the context's mean reward + this; null: none
    min_reward: Optional[float] = MISSING  # keep only rewards of at least this; null: no threshold
    lora: LoraConfig = field(default_factory=LoraConfig)
    guard: BoundsConfig = field(default_factory=BoundsConfig)  # on the policy's own adapter, after every update
    lr: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    max_seq_len: int = MISSING
    num_gpus: float = MISSING
    # false: the policy is one LoRA adapter on the base model, trained further every round; true: each round's
    # adapter is merged into the weights (the paper's way), saved as a model folder, and the next round starts a
    # fresh adapter on it (sampler engines restart and inner workers reload on each new model)
    merge: bool = MISSING


@dataclass
class PlacementConfig:
    """Custom Ray resources each part asks for besides its CPUs and GPUs, e.g. {sampler_node: 0.01}: it runs
    on a node that advertises them (`ray start --resources`, cluster.yaml's node types); {}: anywhere."""

    sampler: dict[str, float] = MISSING
    inner: dict[str, float] = MISSING  # per inner-loop worker
    learner: dict[str, float] = MISSING


@dataclass
class ResourcesConfig:
    address: Optional[str] = MISSING  # null: start a local Ray cluster; "auto": join the running one
    num_cpus: Optional[int] = MISSING  # local cluster only
    num_gpus: Optional[int] = MISSING  # local cluster only; logical GPUs are allowed
    torch_threads: int = MISSING  # per actor / worker
    train_storage: Optional[str] = MISSING  # Ray Train's storage (shared on multi-node clusters); null: the run dir
    placement: PlacementConfig = field(default_factory=PlacementConfig)


@dataclass
class LoggerConfig:
    mode: WandbMode = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING  # W&B run group (jobs/sweep.py: the sweep's name)
    tags: list[str] = MISSING
    num_table_rows: int = MISSING  # sampled self-edits logged per round


@dataclass
class EvalConfig:
    """`seal-dist eval`: which updates to compare on the held-out contexts."""

    mode: EvalMode = MISSING
    run: Optional[str] = MISSING  # a training run directory: its final policy's self-edits and its RL curve
    policy: Optional[str] = MISSING  # or by path: a PEFT adapter folder or a model folder (merged)
    self_edits_files: dict[str, str] = MISSING  # row name: SEAL-schema JSON whose `completions` are self-edits
    samples: int = MISSING  # self-edits per context from each policy (or from the file)
    temperature: float = MISSING  # sampling of the policies' self-edits
    seeds: list[int] = MISSING  # inner-loop seeds: each update is repeated with each
    contexts: int = MISSING  # held-out contexts compared (the first ones of the held-out split)
    # eval.mode=cpt: grade this many of all the contexts' questions, drawn with questions_seed (every context still
    # trains); the reference's v2 draws 500 with seed 42 (not its draw: the same count and seed); null: every one
    questions: Optional[int] = MISSING
    questions_seed: int = MISSING
    bootstrap: int = MISSING  # resamples of the contexts for the confidence intervals
    bootstrap_seed: int = MISSING
    confidence: float = MISSING  # of the intervals; an ordering is significant where its interval excludes 0


@dataclass
class AdaptConfig:
    """`seal-dist adapt`: new documents taken in, one self-edit and one bounded update each, in sequence."""

    policy: Optional[str] = MISSING  # a training run, a PEFT adapter folder, a model folder, or null: the base model
    documents: Optional[str] = MISSING  # a SEAL-schema JSON file, or a folder of .txt files (one document each)
    output: Optional[str] = MISSING  # the folder the adapted model and its report are written to
    resume: bool = MISSING  # continue the sequence an interrupted adapt left in `output`
    compose: Compose = MISSING
    save_merged: bool = MISSING  # also write the adapted model's merged weights (output/model)
    temperature: float = MISSING  # of the self-edit's sampling
    seed: int = MISSING


@dataclass
class ContinualConfig:
    """`seal-dist continual`: sequences of self-edits, the accuracy on every earlier document after each."""

    documents: int = MISSING  # per sequence (the task's held-out contexts, drawn per sequence)
    sequences: int = MISSING
    seed: int = MISSING  # sequence i draws its documents with seed + i


@dataclass
class Config:
    task: Any = MISSING  # a KnowledgeTaskConfig or an ArcTaskConfig (conf/task/*: their schema)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    rounds: int = MISSING
    contexts_per_round: int = MISSING
    heldout_contexts: int = MISSING
    seed: int = MISSING
    run_dir: str = MISSING
    resume: Optional[str] = MISSING  # a run directory to continue from its last complete round
    progress: bool = MISSING
    verbose: bool = MISSING  # engine and worker logs on the console too (false: in <run_dir>/logs only)


class UserError(ValueError):
    """A mistake in a value the user gave (a setting, or a file or folder it names): reported as one line."""


@contextlib.contextmanager
def user_errors(command: str) -> Iterator[None]:
    """Reports a UserError raised inside as `<command>: error: <message>` on stderr and exits with status 2.
    With HYDRA_FULL_ERROR=1 (Hydra's switch for its own errors) it is raised, traceback and all."""
    try:
        yield
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{command}: error: {e}", file=sys.stderr)
        sys.exit(2)


def register() -> None:
    """The schema, and the resolver `${seal_dist.coalesce:a,b}`: a, or b where a is null."""
    store = ConfigStore.instance()
    store.store(name="seal_dist_schema", node=Config)
    store.store(group="task", name="knowledge_schema", node=KnowledgeTaskConfig)
    store.store(group="task", name="arc_schema", node=ArcTaskConfig)
    OmegaConf.register_new_resolver("seal_dist.coalesce", lambda a, b: b if a is None else a, replace=True)


def check_model_folder(model: ModelConfig) -> None:
    """model.path, where set, is a Hugging Face model folder (a check of the machine, not of the config)."""
    if model.path is not None and not (Path(model.path) / "config.json").exists():
        raise UserError(f"model.path={model.path}: not a Hugging Face model folder (no config.json)")


def validate(cfg: DictConfig) -> None:
    """Checks that types cannot express; raises UserError naming the key."""
    unset = OmegaConf.missing_keys(cfg)
    if unset:
        raise UserError(f"missing value for {', '.join(sorted(unset))}")
    if (cfg.model.path is None) == (cfg.model.tiny is None):
        raise UserError("model: set exactly one of model.path (a checkpoint folder) and model.tiny")
    if cfg.learner.lora.r > cfg.sampler.max_lora_rank:
        raise UserError(
            f"learner.lora.r={cfg.learner.lora.r} exceeds sampler.max_lora_rank={cfg.sampler.max_lora_rank}"
        )
    for key in ("rounds", "contexts_per_round", "heldout_contexts", "sampler.num_samples", "sampler.num_engines",
                "inner.repeats", "inner.num_workers", "inner.adapters_per_step", "eval.contexts", "eval.bootstrap",
                "sampler.parse_tries"):
        if OmegaConf.select(cfg, key) < 1:
            raise UserError(f"{key} must be at least 1")
    for key in ("sampler.max_restarts", "inner.job_retries"):
        if OmegaConf.select(cfg, key) < 0:
            raise UserError(f"{key} must be at least 0, got {OmegaConf.select(cfg, key)}")
    if cfg.eval.questions is not None and (cfg.eval.mode != EvalMode.cpt or cfg.eval.questions < 1):
        raise UserError(f"eval.questions={cfg.eval.questions}: a number of questions (at least 1) to draw in "
                        f"eval.mode=cpt, or null (eval.mode={cfg.eval.mode.name})")
    if not 0 < cfg.eval.confidence < 1:
        raise UserError(f"eval.confidence must be between 0 and 1, got {cfg.eval.confidence}")
    for key in ("guard.max_module_norm", "guard.max_total_norm", "learner.guard.max_module_norm",
                "learner.guard.max_total_norm"):
        value = OmegaConf.select(cfg, key)
        if value is not None and value <= 0:
            raise UserError(f"{key} must be above 0 (or null: no bound), got {value}")
    g = cfg.guard
    f = g.forgetting
    if not (f.tolerance >= 0 and 0 <= f.max_changed <= 1 and 0 < f.shrink_factor < 1 and f.shrink_tries >= 0
            and f.probes_per_document >= 0):
        raise UserError("guard.forgetting: need tolerance >= 0, 0 <= max_changed <= 1, 0 < shrink_factor < 1, "
                        f"shrink_tries >= 0 and probes_per_document >= 0; got {OmegaConf.to_container(f)}")
    if f.locality_split not in ("train", "heldout", "pretraining"):
        raise UserError(f"guard.forgetting.locality_split must be train, heldout or pretraining, got {f.locality_split!r}")
    if cfg.task.name not in TEMPLATE_FIELDS:
        raise UserError(f"task.name must be one of {sorted(TEMPLATE_FIELDS)}, got {cfg.task.name!r}")
    for key, fields in TEMPLATE_FIELDS[cfg.task.name]:
        missing = [f for f in fields if f not in OmegaConf.select(cfg, key)]
        if missing:
            raise UserError(f"{key} lacks the field(s) {missing}")


TEMPLATE_FIELDS = {  # per task, each template and the fields it must contain
    "knowledge": (("task.prompt.template", ("{title}", "{context}")), ("task.question_template", ("{question}",)),
                  ("task.answer_template", ("{question}",))),
    "arc": (("task.prompt.template", ("{demonstrations}",)), ("task.chat_template", ("{prompt}",))),
}


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
