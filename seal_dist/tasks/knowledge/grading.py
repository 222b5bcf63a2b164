"""Answer grading: SQuAD-style normalisation, exact match and token F1."""

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains(text: str, answer: str) -> bool:
    """Whether the text states the answer: its normalised words, as whole words of the normalised text."""
    return f" {normalize(answer)} " in f" {normalize(text)} "


def first_line(generation: str) -> str:
    """The first non-empty line of a generation."""
    for line in generation.splitlines():
        if line.strip():
            return line.strip()
    return ""


def first_sentence(generation: str) -> str:
    """The first line up to the end of its first sentence: "flute. Kim was born ..." -> "flute."."""
    return _SENTENCE_END.split(first_line(generation), maxsplit=1)[0]
