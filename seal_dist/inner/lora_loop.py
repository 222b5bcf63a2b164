"""SEAL's inner loop on one device, in plain torch/transformers/peft (no Ray): the current policy stays
resident, each job trains a fresh LoRA adapter on its texts and the adapted model answers its prompts."""

import math
import time

import peft
import torch

from seal_dist.config import InnerConfig
from seal_dist.inner.job import InnerJob, InnerResult
from seal_dist.models import load_model, load_tokenizer, lora_config
from seal_dist.training import Example, generate, mean_loss, train_epochs

INNER, POLICY = "inner", "policy"


class InnerLoop:
    def __init__(self, model_path: str, dtype: str, device: str, cfg: InnerConfig, max_answer_tokens: int, worker: int):
        self.cfg, self.max_answer_tokens, self.worker = cfg, max_answer_tokens, worker
        self.tokenizer = load_tokenizer(model_path)
        self.model = peft.get_peft_model(load_model(model_path, dtype, device), lora_config(cfg.lora), adapter_name=INNER)
        self.policy_version = 0  # version 0 is the base model itself

    def set_policy(self, version: int, adapter_path: str | None) -> None:
        """Makes `version` (a frozen PEFT adapter, None for the base model) the model that jobs update."""
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
        params = []
        for name, p in self.model.named_parameters():
            p.requires_grad_(f".{INNER}." in name)
            if p.requires_grad:
                params.append(p)
        return params

    def run(self, job: InnerJob) -> InnerResult:
        if job.policy_version != self.policy_version:
            raise RuntimeError(f"job {job.job_id} is for policy v{job.policy_version}, worker holds v{self.policy_version}")
        start = time.perf_counter()
        params = self._fresh_adapter(job.seed)
        loss_before = loss_after = None
        if job.train_texts:
            examples = [Example("", text) for text in job.train_texts]
            loss_before = mean_loss(self.model, self.tokenizer, examples, self.cfg.max_seq_len)
            optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.0)
            total = self.cfg.epochs * math.ceil(len(examples) / self.cfg.batch_size)
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / total)
            train_epochs(self.model, self.tokenizer, examples, optimizer, self.cfg.epochs, self.cfg.batch_size,
                         self.cfg.max_seq_len, job.seed, schedule)
            loss_after = mean_loss(self.model, self.tokenizer, examples, self.cfg.max_seq_len)
        trained = time.perf_counter()
        generations = generate(self.model, self.tokenizer, list(job.eval_prompts), self.max_answer_tokens,
                               self.cfg.eval_batch_size, temperature=0.0, top_p=1.0)
        return InnerResult(job.job_id, tuple(generations), loss_before, loss_after,
                           trained - start, time.perf_counter() - trained, self.worker)
