"""K independent LoRA fine-tunes on one device in one forward/backward per step, and the K adapted models'
answers in one batched greedy generation (plain torch/transformers/peft: no Ray, no Hydra).

Every targeted linear layer is wrapped by a `StackedLoRA` whose K adapters are stacked (A: K x r x in,
B: K x out x r, views of one K x N tensor holding every layer's adapters). A batch is laid out adapter-major (its rows are K equal groups, group i
for adapter i), so the LoRA path is two `bmm`s on a view. Each adapter's loss is normalised over its own
tokens and the losses are summed: the adapters' parameters are disjoint, so each gets exactly the gradient
it would get alone. Clipping (torch's formula), AdamW (torch's, a parameter group per adapter) and the linear
learning-rate schedule are per adapter; an adapter whose job has run all its steps, or failed, is frozen: its
weights and moments stay as they are.
The results equal K runs of `SequentialEngine` within float tolerance (tests/test_batched.py).
"""

import math
import time
from typing import TYPE_CHECKING

import peft
import torch
from torch import nn

from seal_dist.inner.engine import check_policy
from seal_dist.inner.job import InnerJob, InnerResult, failed
from seal_dist.training import (MAX_GRAD_NORM, NO_LOSS, collate, encode, epoch_batches, generate, lr_factor, token_losses,
                                warmup_of)

if TYPE_CHECKING:
    from seal_dist.config import InnerConfig

POLICY = "policy"
Encoded = tuple[list[int], list[int]]  # token ids and labels of one example


class StackedLoRA(nn.Module):
    """A linear layer (or a PEFT layer holding the policy's adapter) plus K stacked LoRA adapters; the
    adapters in `window` (a slice or an index tensor) apply to the input's row groups, in order (None: none
    apply), so that a batch holds only the adapters that still train.

    A (K x r x in) and B (K x out x r) are views of columns of the engine's one (K x N) tensor of every
    layer's adapters, so that the optimiser updates all layers of all adapters in a few operations."""

    def __init__(self, base: nn.Module, weights: torch.Tensor, offset: int, r: int, alpha: float, dropout: float):
        super().__init__()
        out_features, in_features = base_weight(base).shape
        a_end = offset + r * in_features
        self.base = base
        self.A = nn.Parameter(weights[:, offset:a_end].view(-1, r, in_features))  # shares the engine's storage
        self.B = nn.Parameter(weights[:, a_end : a_end + out_features * r].view(-1, out_features, r))
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.window: slice | torch.Tensor | None = None

    @staticmethod
    def size(base: nn.Module, r: int) -> int:
        out_features, in_features = base_weight(base).shape
        return r * (in_features + out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.window is None:
            return y
        A, B = self.A[self.window], self.B[self.window]
        xs = self.dropout(x).to(A.dtype).reshape(A.shape[0], -1, x.shape[-1])
        delta = torch.bmm(torch.bmm(xs, A.transpose(1, 2)), B.transpose(1, 2)) * self.scale
        return (y.to(delta.dtype) + delta.reshape(y.shape)).to(y.dtype)


def base_weight(module: nn.Module) -> torch.Tensor:
    return (module.get_base_layer() if isinstance(module, peft.tuners.lora.LoraLayer) else module).weight


class BatchedEngine:
    def __init__(self, model, tokenizer, cfg: "InnerConfig", max_answer_tokens: int, worker: int):
        self.cfg, self.tokenizer, self.max_answer_tokens, self.worker = cfg, tokenizer, max_answer_tokens, worker
        self.capacity = cfg.adapters_per_step
        self.model = model.requires_grad_(False)
        self.layers: list[StackedLoRA] = []
        self._slots: list[tuple[nn.Module, str]] = []
        self._install()
        self.policy_version = 0  # version 0 is the base model itself

    def _install(self) -> None:
        """Wraps the targeted layers of the current model (creating the adapters on first use)."""
        lora = self.cfg.lora
        found = [(name, m) for name, m in self.model.named_modules() if name.rsplit(".", 1)[-1] in lora.target_modules]
        if not found:
            raise ValueError(f"inner.lora.target_modules={list(lora.target_modules)}: no such layers in the model")
        if not self.layers:
            weight = base_weight(found[0][1])
            dtype = torch.promote_types(weight.dtype, torch.float32)  # adapters in fp32 on a bf16 base, as PEFT
            sizes = [StackedLoRA.size(m, lora.r) for _, m in found]
            self.weights = torch.zeros(self.capacity, sum(sizes), dtype=dtype, device=weight.device)
            offsets = [sum(sizes[:j]) for j in range(len(sizes))]
            self.layers = [StackedLoRA(m, self.weights, offset, lora.r, lora.alpha, lora.dropout)
                           for (_, m), offset in zip(found, offsets)]
        self._slots = []
        for (name, module), layer in zip(found, self.layers, strict=True):
            parent, attr = name.rsplit(".", 1)
            layer.base = module
            setattr(self.model.get_submodule(parent), attr, layer)
            self._slots.append((self.model.get_submodule(parent), attr))

    def _uninstall(self) -> None:
        for (parent, attr), layer in zip(self._slots, self.layers):
            setattr(parent, attr, layer.base)

    def set_policy(self, version: int, adapter_path: str | None) -> None:
        if version == self.policy_version:
            return
        self._uninstall()  # PEFT must see the model's own layers
        if isinstance(self.model, peft.PeftModel):
            self.model = self.model.unload()
        if adapter_path is not None:
            self.model = peft.PeftModel.from_pretrained(self.model, adapter_path, adapter_name=POLICY, is_trainable=False)
        self._install()
        self.policy_version = version

    def _window(self, window: slice | torch.Tensor | None) -> None:
        for layer in self.layers:
            layer.window = window

    @torch.no_grad()
    def _fresh_adapter(self, i: int, seed: int) -> None:
        """Adapter i initialised as PEFT initialises a LoRA (A Kaiming-uniform, B = 0), layer by layer in
        the model's order from the same seed, so that it starts where a sequential run starts."""
        torch.manual_seed(seed)
        self.weights[i].zero_()
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.A.data[i], a=math.sqrt(5))

    def run(self, jobs: list[InnerJob]) -> list[InnerResult]:
        check_policy(jobs, self.policy_version)
        if not 1 <= len(jobs) <= self.capacity:
            raise ValueError(f"{len(jobs)} jobs for an engine of {self.capacity} adapters")
        start, k, cfg = time.perf_counter(), len(jobs), self.cfg
        for i, job in enumerate(jobs):
            self._fresh_adapter(i, job.seed)
        data = [[encode(self.tokenizer, ex, cfg.max_seq_len, job.loss_on_prompt, cfg.pad_to) for ex in job.examples] for job in jobs]
        schedules = [job.schedule(cfg.lr, cfg.epochs) for job in jobs]
        plans = [epoch_batches(d, epochs, cfg.batch_size, job.seed) if d else [] for d, job, (_, epochs)
                 in zip(data, jobs, schedules)]
        try:
            trains = [bool(plan) for plan in plans]
            loss_before = self._mean_losses(data, trains)
            errors = self._train(plans, [lr for lr, _ in schedules])
            loss_after = self._mean_losses(data, [t and e is None for t, e in zip(trains, errors)])
            trained = time.perf_counter()
            answers = self._answer(jobs)
        finally:
            self._window(None)
        done, per_job = time.perf_counter(), 1 / k
        return [failed(job, self.worker, error) if error else
                InnerResult(job.job_id, answers[i], loss_before[i], loss_after[i], (trained - start) * per_job,
                            (done - trained) * per_job, self.worker, None)
                for i, (job, error) in enumerate(zip(jobs, errors))]

    def _losses(self, adapters: list[int], rows: list[list[Encoded]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed token loss and token count of each of `adapters` for one adapter-major batch (their
        examples in rows, in order; a shorter group is filled with examples that carry no loss)."""
        self._window(torch.tensor(adapters, device=self.weights.device))
        k, m = len(rows), max(1, max(len(r) for r in rows))
        pad = self.tokenizer.pad_token_id
        filled = [r + [([pad], [NO_LOSS])] * (m - len(r)) for r in rows]
        batch = collate([ex for group in filled for ex in group], pad, self.weights.device)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token_loss, rows_of_tokens = token_losses(logits, batch["labels"])
        owner = rows_of_tokens // m  # rows are adapter-major
        sums = torch.zeros(k, dtype=token_loss.dtype, device=token_loss.device).index_add(0, owner, token_loss)
        return sums, torch.bincount(owner, minlength=k)

    @torch.no_grad()
    def _mean_losses(self, data: list[list[Encoded]], which: list[bool]) -> list[float | None]:
        """Token-weighted mean loss of each adapter over its job's examples (None where not `which`)."""
        self.model.eval()
        k = len(data)
        sums, counts = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.long)
        for j in range(max((len(d) for d, w in zip(data, which) if w), default=0)):
            adapters = [i for i in range(k) if which[i] and j < len(data[i])]
            s, c = self._losses(adapters, [[data[i][j]] for i in adapters])
            sums[adapters] += s.double().cpu()
            counts[adapters] += c.cpu()
        return [(sums[i] / counts[i]).item() if which[i] else None for i in range(k)]

    def _train(self, plans: list[list[list[Encoded]]], lrs: list[float]) -> list[str | None]:
        """Runs every adapter's steps side by side; returns each adapter's failure (None: it trained)."""
        k = len(plans)
        # torch's AdamW with a parameter group per adapter: adapter i's row of the weights, its own lr and
        # step count; an adapter without a gradient at a step is skipped by torch, so it does not move
        rows = [nn.Parameter(self.weights[i]) for i in range(k)]  # views: the update lands in the weights
        optimizer = torch.optim.AdamW([{"params": [row], "lr": lr} for row, lr in zip(rows, lrs)], weight_decay=0.0,
                                      fused=True)
        errors: list[str | None] = [None] * k
        self.model.train()
        for t in range(max(len(p) for p in plans)):
            adapters = [i for i, p in enumerate(plans) if t < len(p) and errors[i] is None]
            if not adapters:
                break
            sums, counts = self._losses(adapters, [plans[i][t] for i in adapters])
            losses = sums / counts.clamp(min=1)
            finite = torch.isfinite(losses.detach()).cpu()
            self._fail(errors, [a for a, ok in zip(adapters, finite) if not ok], f"non-finite training loss at step {t}")
            active = torch.zeros(k, dtype=torch.bool)
            active[adapters] = finite
            if not active.any():
                continue
            losses[finite.to(losses.device)].sum().backward()
            grad = torch.cat([p.grad[:k].flatten(1) for layer in self.layers for p in (layer.A, layer.B)], dim=1)
            norms = grad.norm(dim=1)
            finite = torch.isfinite(norms).cpu()
            self._fail(errors, (active & ~finite).nonzero().flatten().tolist(), f"non-finite gradient at step {t}")
            active &= finite
            clipped = grad * (MAX_GRAD_NORM / (norms + 1e-6)).clamp(max=1.0).view(-1, 1)  # torch's clip_grad_norm_
            for i, (row, group) in enumerate(zip(rows, optimizer.param_groups)):
                row.grad = clipped[i] if active[i] else None
                group["lr"] = lrs[i] * lr_factor(t, len(plans[i]), self.cfg.schedule, warmup_of(self.cfg, len(plans[i])))
            optimizer.step()
            for layer in self.layers:
                layer.A.grad = layer.B.grad = None
        for i, error in enumerate(errors):
            if error is not None:  # a diverged adapter answers as the policy (its answers are discarded)
                self.weights[i].zero_()
        return errors

    @staticmethod
    def _fail(errors: list[str | None], adapters: list[int], reason: str) -> None:
        for i in adapters:
            errors[i] = reason

    def _answer(self, jobs: list[InnerJob]) -> list[tuple[str, ...]]:
        """Greedy answers of each adapted model to its job's prompts, as few batched generations as
        inner.eval_batch_size allows (every adapter's prompt group filled to the same size)."""
        m = max(1, max(len(job.eval_prompts) for job in jobs))
        filler = next((job.eval_prompts[0] for job in jobs if job.eval_prompts), self.tokenizer.eos_token)
        per_call = max(1, self.cfg.eval_batch_size // m)
        answers = []
        for first in range(0, len(jobs), per_call):
            group = jobs[first : first + per_call]
            self._window(slice(first, first + len(group)))
            prompts = [p for job in group for p in (*job.eval_prompts, *[filler] * (m - len(job.eval_prompts)))]
            out = generate(self.model, self.tokenizer, prompts, self.max_answer_tokens, len(prompts), 0.0, 1.0)
            answers += [tuple(out[i * m : i * m + len(job.eval_prompts)]) for i, job in enumerate(group)]
        return answers
