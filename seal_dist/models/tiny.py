"""The project's own tiny Qwen2 model: a byte-level BPE tokenizer and a small decoder, pretrained on the
task's pretraining corpus (a synthetic world of that domain, disjoint from the task's contexts), then cached
in Hugging Face format under a key of everything that determines it."""

import hashlib
import json
import math
from pathlib import Path

import torch
from rich.progress import Progress
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from seal_dist.config import TinyModelConfig, UserError, to_container
from seal_dist.example import Example
from seal_dist.tasks.interface import Task

BUILD_VERSION = 9  # bump when the corpus or the build changes, so cached models are rebuilt
EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<unk>"
# Qwen2's pre-tokenisation: transformers and vLLM rebuild a qwen2 folder's tokenizer with this split, so a
# tokenizer trained with any other would tokenise differently there.
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer(corpus: list[Example], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator((ex.prompt + ex.completion for ex in corpus), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=UNK)


def packed_rows(tokenizer: PreTrainedTokenizerFast, corpus: list[Example], length: int) -> torch.Tensor:
    """Whole EOS-terminated examples packed greedily into rows of `length` tokens, padded at the end: a
    self-edit is never cut off from the passage it reads."""
    rows, row = [], []
    for ids in tokenizer([ex.prompt + ex.completion for ex in corpus], add_special_tokens=False)["input_ids"]:
        ids = ids + [tokenizer.eos_token_id]
        if len(ids) > length:
            raise UserError(f"a pretraining example has {len(ids)} tokens, more than "
                            f"model.tiny.pretrain_seq_len={length}")
        if len(row) + len(ids) > length:
            rows.append(row)
            row = []
        row += ids
    rows.append(row)
    return torch.tensor([row + [tokenizer.pad_token_id] * (length - len(row)) for row in rows])


def spec_key(spec: TinyModelConfig, task: Task) -> str:
    """A digest of everything that determines the built model."""
    fields = {"build": BUILD_VERSION, "tiny": to_container(spec), "corpus": task.pretraining_spec()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build(spec: TinyModelConfig, task: Task, out: Path) -> None:
    torch.manual_seed(spec.seed)
    corpus = task.pretraining_corpus(spec.seed)
    tokenizer = build_tokenizer(corpus, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_position,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_lr, weight_decay=0.01)
    warmup = max(1, spec.pretrain_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / spec.pretrain_steps)),
    )
    rows = packed_rows(tokenizer, corpus, spec.pretrain_seq_len)
    generator = torch.Generator().manual_seed(spec.seed)
    model.train()
    with Progress(transient=True) as progress:
        bar = progress.add_task("pretraining the tiny model", total=spec.pretrain_steps)
        for _ in range(spec.pretrain_steps):
            batch = rows[torch.randint(len(rows), (spec.pretrain_batch_size,), generator=generator)]
            loss = model(input_ids=batch, labels=batch.masked_fill(batch == tokenizer.pad_token_id, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            progress.update(bar, advance=1, description=f"pretraining the tiny model (loss {loss.item():.3f})")
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "pretraining.json").write_text(json.dumps({"final_loss": loss.item(), "corpus_examples": len(corpus),
                                                       "spec": to_container(spec)}, indent=2))
    tmp.rename(out)


def ensure(spec: TinyModelConfig, task: Task, cache_dir: str) -> str:
    """The path of the built tiny model, building it on first use."""
    out = Path(cache_dir).expanduser() / f"tiny-qwen2-{spec_key(spec, task)}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build(spec, task, out)
    return str(out)
