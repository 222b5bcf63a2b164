"""The tiny model's pretraining data: look-up drills and whole-example packing (no training)."""

import random

import pytest

from seal_dist.models import tiny
from seal_dist.training import Example
from tests.conftest import compose_config


def test_roster_second_list_is_a_reordering_of_the_first():
    rng = random.Random(0)
    for _ in range(50):
        header, rest = tiny._roster(rng).split("\n", 1)
        first, second = rest.split("\nagain\n")
        assert header
        assert sorted(first.split("\n")) == sorted(second.split("\n"))
        assert all(": " in line for line in first.split("\n"))


def test_packed_rows_keep_every_example_whole():
    cfg = compose_config("experiment=demo_cpu", "run_dir=unused", "model.tiny.readers=40", "model.tiny.rosters=40",
                         "model.tiny.world.num_train=40")
    corpus = tiny.pretraining_corpus(cfg.model.tiny, cfg.task)
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
