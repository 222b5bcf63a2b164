"""Torch building blocks shared by pretraining, the inner-loop engines, the learner and the HF sampler:
tokenising prompt/completion pairs, padded batches, the order of epochs, training, mean loss, batched
generation and PEFT LoRA configs. No Hydra or Ray: the GPU benchmark imports this on a bare machine."""

import math
import random
from typing import TYPE_CHECKING

import peft
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from seal_dist.example import Example

if TYPE_CHECKING:
    from seal_dist.config import InnerConfig, LoraConfig


MAX_GRAD_NORM = 1.0  # gradient-norm clipping of every fine-tune (torch's clip_grad_norm_ formula)
NO_LOSS = -100  # the label of a token that carries no loss


def lora_config(cfg: "LoraConfig", targets: list[str] | None = None) -> peft.LoraConfig:
    """PEFT's config for cfg; `targets` (full module names) narrows cfg.target_modules to those modules."""
    return peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                           target_modules=list(cfg.target_modules) if targets is None else targets, task_type="CAUSAL_LM")


def train_only(model: torch.nn.Module, adapter: str) -> list[torch.nn.Parameter]:
    """Makes the named PEFT adapter's parameters the model's only trainable ones; returns them."""
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(f".{adapter}." in name)
        if p.requires_grad:
            params.append(p)
    return params


def encode(tokenizer: PreTrainedTokenizerBase, ex: Example, max_len: int,
           loss_on_prompt: bool = False, pad_to: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt unless loss_on_prompt), truncated to max_len. `pad_to`: the
    completion's EOS is repeated up to that many tokens, with the loss on every one (the SEAL reference's
    knowledge inner loop pads with EOS and trains on the padding; here the padding is also attended)."""
    prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else []
    completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    completion += [tokenizer.eos_token_id] * max(0, (pad_to or 0) - len(prompt) - len(completion))
    ids = (prompt + completion)[:max_len]
    labels = ((prompt if loss_on_prompt else [NO_LOSS] * len(prompt)) + completion)[:max_len]
    return ids, labels


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device) -> dict:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), NO_LOSS, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy at every labelled position (in at least float32, as transformers computes
    it, but float64 stays float64), and the row of each of those positions."""
    targets = labels[:, 1:]
    rows, cols = (targets != NO_LOSS).nonzero(as_tuple=True)
    scores = logits[:, :-1][rows, cols]
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return torch.nn.functional.cross_entropy(scores, targets[rows, cols], reduction="none"), rows


def causal_lm_loss(model: PreTrainedModel, batch: dict) -> torch.Tensor:
    """The batch's mean next-token loss over its labelled tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_losses(logits, batch["labels"])[0].mean()


def epoch_batches(encoded: list, epochs: int, batch_size: int, seed: int) -> list[list]:
    """Every step's mini-batch, in order: each epoch a fresh seeded shuffle cut into batches."""
    rng, steps = random.Random(seed), []
    for _ in range(epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        steps += [[encoded[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    return steps


def warmup_of(cfg: "InnerConfig", total: int) -> int:
    """Warm-up steps of an update of `total` steps: inner.warmup_steps, or inner.warmup_ratio of them if more."""
    return max(cfg.warmup_steps, math.ceil(cfg.warmup_ratio * total))


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """The learning rate's multiplier at a step of `total`: a linear warm-up over `warmup` steps, then a
    `linear` or `cosine` decay to 0 (with no warm-up, linear is 1 - step / total)."""
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else max(0.0, 1 - progress)


def train_epochs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    max_len: int,
    seed: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_on_prompt: bool = False,
    pad_to: int | None = None,
) -> list[float]:
    """Trains for whole epochs over shuffled mini-batches; returns each step's loss."""
    model.train()
    encoded = [encode(tokenizer, ex, max_len, loss_on_prompt, pad_to) for ex in examples]
    losses = []
    for batch in epoch_batches(encoded, epochs, batch_size, seed):
        loss = causal_lm_loss(model, collate(batch, tokenizer.pad_token_id, model.device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], MAX_GRAD_NORM)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def fine_tune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, params: list[torch.nn.Parameter],
              examples: list[Example], lr: float, epochs: int, cfg: "InnerConfig", seed: int,
              loss_on_prompt: bool) -> list[float]:
    """One inner-loop update of `params` (AdamW, no weight decay, cfg's schedule and batches); each step's loss."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = epochs * math.ceil(len(examples) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, cfg.schedule, warmup_of(cfg, total)))
    return train_epochs(model, tokenizer, examples, optimizer, epochs, cfg.batch_size, cfg.max_seq_len, seed, schedule,
                        loss_on_prompt, cfg.pad_to)


@torch.no_grad()
def mean_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_len: int,
              loss_on_prompt: bool = False, pad_to: int | None = None) -> float:
    """Token-weighted mean loss over the examples."""
    model.eval()
    total, tokens = 0.0, 0
    for ids, labels in (encode(tokenizer, ex, max_len, loss_on_prompt, pad_to) for ex in examples):
        batch = collate([(ids, labels)], tokenizer.pad_token_id, model.device)
        n = sum(1 for t in labels[1:] if t != NO_LOSS)
        total += causal_lm_loss(model, batch).item() * n
        tokens += n
    return total / max(tokens, 1)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    temperature: float,
    top_p: float,
) -> list[str]:
    """Continuations of the prompts (greedy when temperature is 0), decoded without special tokens."""
    model.eval()
    tokenizer.padding_side = "left"
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    texts = []
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **sampling,
        )
        texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return texts
