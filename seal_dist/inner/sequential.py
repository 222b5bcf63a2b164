"""The reference's inner loop on one device, in plain torch/transformers/peft (no Ray): the current policy
stays resident, and each job in turn trains a fresh PEFT LoRA adapter and the adapted model answers its
prompts. The batched engine (`batched.py`) must give the same results; this one is its yardstick. The full
engine trains every weight instead of an adapter (continued pretraining as the reference's v2 does it)."""

import math
import time
from typing import TYPE_CHECKING

import peft
import torch

from seal_dist.inner.engine import check_policy
from seal_dist.inner.job import InnerJob, InnerResult, failed
from seal_dist.training import fine_tune, generate, lora_config, mean_loss, train_only

if TYPE_CHECKING:
    from seal_dist.config import InnerConfig

INNER, POLICY = "inner", "policy"


class SequentialEngine:
    def __init__(self, model, tokenizer, cfg: "InnerConfig", max_answer_tokens: int, worker: int):
        self.cfg, self.tokenizer, self.max_answer_tokens, self.worker = cfg, tokenizer, max_answer_tokens, worker
        self.model = peft.get_peft_model(model, lora_config(cfg.lora), adapter_name=INNER)
        self.policy_version = 0  # version 0 is the base model itself

    def set_policy(self, version: int, adapter_path: str | None) -> None:
        if version == self.policy_version:
            return
        if POLICY in self.model.peft_config:
            self.model.delete_adapter(POLICY)
        if adapter_path is not None:
            self.model.load_adapter(adapter_path, adapter_name=POLICY, is_trainable=False)
        self.policy_version = version

    def _fresh_adapter(self, seed: int) -> list[torch.nn.Parameter]:
        """Re-initialises the inner adapter (B = 0, so the model equals the policy) and activates it on top
        of the policy; returns its parameters, the only trainable ones."""
        torch.manual_seed(seed)
        for module in self.model.modules():
            if isinstance(module, peft.tuners.lora.LoraLayer) and INNER in module.lora_A:
                module.reset_lora_parameters(INNER, init_lora_weights=True)
        active = [INNER, POLICY] if POLICY in self.model.peft_config else [INNER]
        self.model.base_model.set_adapter(active)
        return train_only(self.model, INNER)

    def run(self, jobs: list[InnerJob]) -> list[InnerResult]:
        check_policy(jobs, self.policy_version)
        return [self._run(job) for job in jobs]

    def _run(self, job: InnerJob) -> InnerResult:
        start = time.perf_counter()
        params = self._fresh_adapter(job.seed)
        lr, epochs = job.schedule(self.cfg.lr, self.cfg.epochs)
        loss_before = loss_after = None
        if job.examples and epochs > 0:
            examples, length = list(job.examples), self.cfg.max_seq_len
            loss_before = mean_loss(self.model, self.tokenizer, examples, length, job.loss_on_prompt, self.cfg.pad_to)
            losses = fine_tune(self.model, self.tokenizer, params, examples, lr, epochs, self.cfg, job.seed,
                               job.loss_on_prompt)
            bad = next((step for step, loss in enumerate(losses) if not math.isfinite(loss)), None)
            if bad is not None:
                return failed(job, self.worker, f"non-finite training loss at step {bad}")
            loss_after = mean_loss(self.model, self.tokenizer, examples, length, job.loss_on_prompt, self.cfg.pad_to)
        trained = time.perf_counter()
        generations = generate(self.model, self.tokenizer, list(job.eval_prompts), self.max_answer_tokens,
                               self.cfg.eval_batch_size, temperature=0.0, top_p=1.0)
        return InnerResult(job.job_id, tuple(generations), loss_before, loss_after,
                           trained - start, time.perf_counter() - trained, self.worker, None)


class FullEngine(SequentialEngine):
    """Each job fine-tunes every weight of the policy model, starting from a copy of them kept in host memory
    (one more copy of the model: the base model's, when a policy adapter is merged in)."""

    def __init__(self, model, tokenizer, cfg: "InnerConfig", max_answer_tokens: int, worker: int):
        self.cfg, self.tokenizer, self.max_answer_tokens, self.worker = cfg, tokenizer, max_answer_tokens, worker
        self.model, self.policy_version = model, 0
        self._base = self._weights = _host_copy(model)

    def set_policy(self, version: int, adapter_path: str | None) -> None:
        """The policy's adapter merged into the base weights: the weights every job starts from."""
        if version == self.policy_version:
            return
        self.model.load_state_dict(self._base)
        if adapter_path is not None:
            self.model = peft.PeftModel.from_pretrained(self.model, adapter_path).merge_and_unload()
        self._weights = self._base if adapter_path is None else _host_copy(self.model)
        self.policy_version = version

    def _fresh_adapter(self, seed: int) -> list[torch.nn.Parameter]:
        torch.manual_seed(seed)
        self.model.load_state_dict(self._weights)
        for p in self.model.parameters():
            p.requires_grad_(True)
        return list(self.model.parameters())


def _host_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}
