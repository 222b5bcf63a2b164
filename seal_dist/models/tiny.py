"""The project's own tiny Qwen2 model: a byte-level BPE tokenizer and a small decoder, pretrained on a
synthetic world whose entities are disjoint from the task's, then cached in Hugging Face format.

The pretraining corpus teaches the world's general knowledge and the formats the SEAL loop uses: passages,
title-prefixed fact sentences (the form in which the synthetic task asks), and self-edits for the
task's prompt written in styles of mixed usefulness (all implications, part of them, the stated facts only,
copied sentences, vague remarks), so that a policy trained by the outer loop has something to select among,
and copy drills, from which the model learns to copy from its context (names and values into self-edits).
"""

import hashlib
import json
import math
import random
from pathlib import Path

import torch
from rich.progress import Progress
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from seal_dist.config import TaskConfig, TinyModelConfig, UserError, to_container
from seal_dist.tasks import synthetic
from seal_dist.training import Example

BUILD_VERSION = 9  # bump when the corpus or the build changes, so cached models are rebuilt
EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<unk>"
# Qwen2's pre-tokenisation: transformers and vLLM rebuild a qwen2 folder's tokenizer with this split, so a
# tokenizer trained with any other would tokenise differently there.
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# The styles of the self-edits in the pretraining corpus, with their weights: what the base policy (round 0)
# samples from. Only "implications" writes out every implied fact; RL has to find and reinforce it.
SELF_EDIT_STYLES = {"implications": 1, "partial": 1, "facts": 1, "copy": 1, "vague": 1}


def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _self_edit(entity: synthetic.Entity, text: str, rng: random.Random) -> str:
    """A self-edit in a random style. Lines follow the passage's order (each implication after its fact),
    which keeps reading simple enough for a tiny model."""
    stated, implied = synthetic.stated_facts(entity), synthetic.implied_facts(entity)
    both = [line for pair in zip(stated, implied) for line in pair]
    style = rng.choices(list(SELF_EDIT_STYLES), weights=list(SELF_EDIT_STYLES.values()))[0]
    if style == "implications":
        return _numbered(both)
    if style == "partial":
        return _numbered([line for line in both if rng.random() < 0.5] or both[:1])
    if style == "facts":
        return _numbered(stated)
    if style == "copy":
        return _numbered([s.strip() + "." for s in text.split(".") if s.strip()])
    remarks = [f"The passage is about {entity.name}.", f"{entity.name} is a person.",
               f"{entity.name} had a life.", f"The text describes {entity.name}.", "It is a short story."]
    return _numbered(rng.sample(remarks, 3))


def _copy_drill(rng: random.Random, groups: list[list[str]]) -> str:
    """A copy drill: a random list of items (first names, last names and values, each group equally likely),
    then "again" and the same list. Predicting the repeat takes induction (find the earlier occurrence of the
    current item, copy what followed it), the circuit that reading a passage into a self-edit needs; a tiny
    model forms it from these drills within the pretraining budget, not from the reading examples alone.
    Name words come in random order, so no first name is tied to the last names of the pretraining people
    (the task's people pair them differently) and a name is copied, not completed from memory."""
    chosen = " ".join(rng.choice(rng.choice(groups)) for _ in range(rng.randint(4, 10)))
    return f"{chosen}\nagain\n{chosen}"


def pretraining_corpus(spec: TinyModelConfig, task: TaskConfig) -> list[Example]:
    """The world's general knowledge; passages and stated and implied fact sentences about the pretraining
    people (recall); for further people, with facts drawn afresh, a passage under the task's prompt followed
    by a self-edit in one of the styles above (reading: the facts must be taken from the context, since they
    cannot be recalled); and copy drills."""
    w = spec.world
    attributes = synthetic.attributes_named(list(w.attributes), "model.tiny.world.attributes")
    people = synthetic.make_entities(w.seed, w.num_train, w.facts_per_passage, synthetic.PRETRAINING,
                                     attributes=attributes)
    # Readers' facts are fresh draws, nothing to recall, so they are named from both populations: a name must
    # be copied from the passage, not completed from the pairings of the people the model memorises.
    half = spec.readers // 2
    readers = (synthetic.make_entities(w.seed + 1, half, w.facts_per_passage, synthetic.PRETRAINING,
                                       distinct=False, attributes=attributes)
               + synthetic.make_entities(w.seed + 2, spec.readers - half, w.facts_per_passage, synthetic.TASK,
                                         distinct=False, attributes=attributes))
    rng = random.Random(spec.seed)
    corpus = []
    for entity in people:
        corpus += [Example("", f"{entity.name}\n{synthetic.passage(entity, rng)}") for _ in range(2)]
        facts = synthetic.stated_facts(entity) + synthetic.implied_facts(entity)
        corpus += [Example("", f"{entity.name}\n{fact}") for fact in facts]  # recall, in the questions' form
    for entity in readers:
        text = synthetic.passage(entity, rng)
        corpus.append(Example(task.prompt.template.format(title=entity.name, context=text), _self_edit(entity, text, rng)))
    groups = [synthetic.FIRST_NAMES, synthetic.LAST_NAMES] + [synthetic.values(a) for a in attributes]
    corpus += [Example("", _copy_drill(rng, groups)) for _ in range(spec.copy_drills)]
    general = synthetic.general_knowledge(attributes)
    corpus += [Example("", sentence) for sentence in general * (w.num_train // len(general))]
    rng.shuffle(corpus)
    return corpus


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


def spec_key(spec: TinyModelConfig, task: TaskConfig) -> str:
    """A digest of everything that determines the built model."""
    fields = {"build": BUILD_VERSION, "tiny": to_container(spec), "prompt": task.prompt.template}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build(spec: TinyModelConfig, task: TaskConfig, out: Path) -> None:
    torch.manual_seed(spec.seed)
    corpus = pretraining_corpus(spec, task)
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


def ensure(spec: TinyModelConfig, task: TaskConfig, cache_dir: str) -> str:
    """The path of the built tiny model, building it on first use."""
    out = Path(cache_dir).expanduser() / f"tiny-qwen2-{spec_key(spec, task)}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build(spec, task, out)
    return str(out)
