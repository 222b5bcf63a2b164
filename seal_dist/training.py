"""Torch building blocks shared by pretraining, the inner loop, the learner and the HF sampler:
tokenising prompt/completion pairs, padded batches, epochs of training, mean loss and batched generation."""

import random
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Example:
    prompt: str  # context, no loss
    completion: str  # trained on; an EOS token is appended


def encode(tokenizer: PreTrainedTokenizerBase, ex: Example, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt), truncated to max_len."""
    prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else []
    completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + completion)[:max_len]
    labels = ([-100] * len(prompt) + completion)[:max_len]
    return ids, labels


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device) -> dict:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def batches(encoded: list, batch_size: int, rng: random.Random) -> list[list]:
    order = list(range(len(encoded)))
    rng.shuffle(order)
    return [[encoded[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]


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
) -> list[float]:
    """Trains for whole epochs over shuffled mini-batches; returns each step's loss."""
    model.train()
    encoded = [encode(tokenizer, ex, max_len) for ex in examples]
    rng, losses = random.Random(seed), []
    for _ in range(epochs):
        for batch in batches(encoded, batch_size, rng):
            loss = model(**collate(batch, tokenizer.pad_token_id, model.device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    return losses


@torch.no_grad()
def mean_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_len: int) -> float:
    """Token-weighted mean loss over the examples."""
    model.eval()
    total, tokens = 0.0, 0
    for ids, labels in (encode(tokenizer, ex, max_len) for ex in examples):
        batch = collate([(ids, labels)], tokenizer.pad_token_id, model.device)
        n = sum(1 for t in labels[1:] if t != -100)
        total += model(**batch).loss.item() * n
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
