"""The inner loop at paper scale on one GPU: the reference's way against the batched engine, side by side in
one run on the same self-edits. Needs only torch, transformers and peft (a bare GPU machine):

    python benchmarks/batched_gpu.py [--arch qwen2.5-7b|llama-3.2-1b] [--jobs 32] [--k 1,4,16,32] \\
        [--data ../shared/data/seal/knowledge/base_val.json]
    python benchmarks/batched_gpu.py --arch tiny --device cpu --jobs 2 --k 2 --reference-pad 64   # does it run?

The model has the named architecture with random weights (it costs what the real one costs; nothing is
downloaded), in bf16. Jobs use the paper's knowledge inner loop (LoRA r=32, alpha=64 on q/v, lr 1e-3,
10 epochs, batch 1): each self-edit of the data file becomes its training sequences as the reference cuts
them (title-prefixed lines plus the passage), with token lengths estimated as characters / 4 (Qwen2.5's
tokenizer averages about 4 characters per English token; the real tokenizer is not available offline), and
the update is evaluated on 5 questions of 20 tokens with 64 greedy tokens each. Rows:

    reference      PEFT, one job at a time, every sequence padded to 2048 tokens with loss on the padding
    sequential     PEFT, one job at a time, no padding
    batched K=k    K adapters per forward/backward and one batched generation

Printed per row: seconds per self-edit (amortised), peak GPU memory, trained tokens per second and the
training MFU (4 x parameters FLOPs per trained token: the base is frozen, so no weight gradients).
"""

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from seal_dist.example import Example  # noqa: E402
from seal_dist.inner.batched import BatchedEngine  # noqa: E402
from seal_dist.inner.job import InnerJob  # noqa: E402
from seal_dist.inner.sequential import SequentialEngine  # noqa: E402
from seal_dist.tasks.knowledge.segments import update_texts  # noqa: E402

ARCHS = {  # the published configs' shapes
    "qwen2.5-7b": (Qwen2Config, Qwen2ForCausalLM, dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6,
        tie_word_embeddings=False)),
    "llama-3.2-1b": (LlamaConfig, LlamaForCausalLM, dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=5e5, tie_word_embeddings=True)),
    "tiny": (Qwen2Config, Qwen2ForCausalLM, dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=4096, max_position_embeddings=4096)),
}
PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM dense bf16
MAX_SEQ_LEN = 4096  # no truncation of the padded reference sequences
QUESTIONS, QUESTION_TOKENS, ANSWER_TOKENS = 5, 20, 64
EOS = "<eos>"


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """One token per word w0..wN: a text of n words is exactly n tokens."""
    vocab = {EOS: 0, **{f"w{i}": i for i in range(1, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)


def words(rng: random.Random, n: int, vocab_size: int) -> str:
    return " ".join(f"w{rng.randrange(1, vocab_size)}" for _ in range(max(1, n)))


def make_jobs(data: Path, n: int, vocab_size: int, pad_to: int | None) -> list[InnerJob]:
    """The first n self-edits of the file (one per passage, then the next ones), as jobs with random tokens
    of each training sequence's estimated length; `pad_to` pads every sequence with EOS, loss included."""
    records = json.loads(data.read_text())
    edits = [(r, c) for depth in range(5) for r in records for c in r["completions"][depth : depth + 1]][:n]
    rng, jobs = random.Random(0), []
    for i, (record, completion) in enumerate(edits):
        lengths = [math.ceil(len(t) / 4) for t in update_texts(record["title"], record["context"], completion, None, False)]
        texts = [words(rng, length, vocab_size) for length in lengths]
        if pad_to is not None:
            texts = [t + f" {EOS}" * (pad_to - 1 - length) for t, length in zip(texts, lengths)]
        prompts = tuple(words(rng, QUESTION_TOKENS, vocab_size) for _ in range(QUESTIONS))
        jobs.append(InnerJob(f"j{i}", 0, tuple(Example("", t) for t in texts), True, prompts, i, None, None))
    return jobs


def inner_settings(k: int) -> SimpleNamespace:
    lora = SimpleNamespace(r=32, alpha=64, dropout=0.0, target_modules=["q_proj", "v_proj"])
    return SimpleNamespace(lora=lora, lr=1e-3, epochs=10, schedule="linear", warmup_steps=0, warmup_ratio=0.0, batch_size=1, max_seq_len=MAX_SEQ_LEN, pad_to=None,
                           eval_batch_size=k * QUESTIONS, adapters_per_step=k)


def measure(engine, jobs: list[InnerJob], k: int, device: str) -> dict:
    engine.run(jobs[:1])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, results = time.perf_counter(), []
    for first in range(0, len(jobs), k):
        results += engine.run(jobs[first : first + k])
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    epochs = engine.cfg.epochs
    trained = sum(sum(len(ex.completion.split()) + 1 for ex in job.examples) for job in jobs) * epochs
    train_s = sum(r.train_s for r in results)
    return {"s/edit": wall / len(jobs), "peak GiB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0,
            "tokens/s": trained / train_s, "train s": train_s, "errors": sum(r.error is not None for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=ARCHS, default="qwen2.5-7b")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/seal/knowledge/base_val.json"))
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--reference-jobs", type=int, default=2, help="jobs of the padded reference row (slow)")
    parser.add_argument("--reference-pad", type=int, default=2048, help="the reference's padded sequence length")
    parser.add_argument("--k", default="1,4,16,32")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    config_class, model_class, shape = ARCHS[args.arch]
    config = config_class(**shape)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    tokenizer = word_tokenizer(config.vocab_size)

    def fresh():
        """The same random model for every row (an engine wraps its model's layers)."""
        if args.device == "cuda":
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        with torch.device(args.device):
            return model_class._from_config(config, dtype=dtype)

    params = sum(p.numel() for p in fresh().parameters())

    jobs = make_jobs(args.data, args.jobs, config.vocab_size, None)
    padded = make_jobs(args.data, args.reference_jobs, config.vocab_size, args.reference_pad)
    print(f"{args.arch}: {params / 1e9:.2f}B parameters; {len(jobs)} self-edits, "
          f"{sum(len(j.examples) for j in jobs) / len(jobs):.1f} sequences of "
          f"{sum(len(e.completion.split()) for j in jobs for e in j.examples) / sum(len(j.examples) for j in jobs):.0f}"
          " tokens on average")
    reference = f"reference (padded to {args.reference_pad})"
    rows = {reference: measure(SequentialEngine(fresh(), tokenizer, inner_settings(1), ANSWER_TOKENS, 0), padded, 1,
                               args.device)}
    rows["sequential (PEFT, no padding)"] = measure(
        SequentialEngine(fresh(), tokenizer, inner_settings(1), ANSWER_TOKENS, 0), jobs, 1, args.device)
    for k in (int(x) for x in args.k.split(",")):
        rows[f"batched K={k}"] = measure(BatchedEngine(fresh(), tokenizer, inner_settings(k), ANSWER_TOKENS, 0),
                                         jobs, k, args.device)
    base = rows[reference]["s/edit"]
    print(f"{'engine':30s} {'s/self-edit':>11s} {'vs reference':>12s} {'peak GiB':>9s} {'train tok/s':>12s} {'MFU':>6s}")
    for name, row in rows.items():
        mfu = 4 * params * row["tokens/s"] / PEAK_BF16_FLOPS
        print(f"{name:30s} {row['s/edit']:11.2f} {base / row['s/edit']:11.1f}x {row['peak GiB']:9.1f} "
              f"{row['tokens/s']:12.0f} {mfu:6.1%}" + (f"  ({row['errors']} failed)" if row["errors"] else ""))


if __name__ == "__main__":
    main()
