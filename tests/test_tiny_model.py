"""The tiny model's pretraining data: copy drills, disjoint people and whole-example packing (no training)."""

import random
import re

import pytest

from seal_dist.example import Example
from seal_dist.models import tiny
from seal_dist.tasks.interface import create
from seal_dist.tasks.knowledge import pretraining
from seal_dist.tasks.knowledge import world as synthetic
from tests.conftest import compose_config


def test_copy_drill_repeats_its_list():
    rng = random.Random(0)
    for _ in range(50):
        drill = pretraining._copy_drill(rng, [["Anna Berger", "Nils Holm"], ["harp"], ["1758"]])
        first, second = drill.split("\nagain\n")
        assert first == second and 4 <= len(first.split()) <= 20


def test_task_people_are_never_recalled_in_pretraining():
    """The facts the model memorises are about the pretraining population; a task person's full name turns up
    only in reading examples (facts drawn afresh, to be read from the passage) and in copy drills."""
    cfg = compose_config("experiment=demo_cpu", "run_dir=unused", "task.pretraining.readers=200",
                         "task.pretraining.copy_drills=2000", "task.pretraining.world.num_train=200")
    pretraining = set(synthetic.population_names(synthetic.PRETRAINING))
    full_name = rf"\b(?:{'|'.join(synthetic.FIRST_NAMES)}) (?:{'|'.join(synthetic.LAST_NAMES)})\b"
    met = set()
    for ex in create(cfg).pretraining_corpus(cfg.model.tiny.seed):
        text = ex.prompt + ex.completion
        names = set(re.findall(full_name, text))
        met |= names & pretraining
        if names - pretraining:
            first, again, second = text.partition("\nagain\n")
            assert ex.prompt or (again and first == second), text
    assert len(met) > 300  # the pattern finds the people the model does meet


def test_packed_rows_keep_every_example_whole():
    cfg = compose_config("experiment=demo_cpu", "run_dir=unused", "task.pretraining.readers=40", "task.pretraining.copy_drills=40",
                         "task.pretraining.world.num_train=40")
    corpus = create(cfg).pretraining_corpus(cfg.model.tiny.seed)
    tokenizer = tiny.build_tokenizer(corpus, 1024)
    rows = tiny.packed_rows(tokenizer, corpus, 256)
    pieces = []
    for row in rows.tolist():
        ids = [i for i in row if i != tokenizer.pad_token_id]
        assert ids[-1] == tokenizer.eos_token_id  # a row ends at an example's end
        pieces += tokenizer.decode(ids).split(tiny.EOS)[:-1]
    assert sorted(pieces) == sorted(ex.prompt + ex.completion for ex in corpus)


def test_an_example_longer_than_a_row_is_an_error():
    corpus = [Example("", "word " * 50)]
    tokenizer = tiny.build_tokenizer(corpus, 300)
    with pytest.raises(ValueError, match="pretrain_seq_len=8"):
        tiny.packed_rows(tokenizer, corpus, 8)
