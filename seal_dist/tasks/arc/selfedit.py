"""ARC self-edits: the JSON a model writes to choose augmentations and test-time training settings.

Model output is untrusted: it is decoded as JSON, never evaluated, and checked field by field.
"""

import json
import sys
from dataclasses import dataclass

_SWITCHES = (("basic", "use_basic_augmentations"), ("size", "use_size_augmentations"),
             ("chain", "use_chain_augmentations"), ("repeat", "use_repeat_augmentations"))
STRATEGIES = {"train_using_all_tokens": True, "train_using_output_tokens": False}  # -> loss_on_all_tokens
_KINDS = {  # a JSON type's name -> whether a decoded value is of it (a boolean is not a number)
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
          type(None): "null"}


@dataclass(frozen=True)
class SelfEdit:
    basic: bool
    size: bool
    chain: bool
    repeat: bool
    loss_on_all_tokens: bool
    learning_rate: float
    epochs: int

    def families(self) -> tuple[str, ...]:
        """The augmentation families switched on (keys of augment.FAMILIES)."""
        return tuple(family for family, _ in _SWITCHES if getattr(self, family))


@dataclass(frozen=True)
class ParseFailure:
    field: str  # the JSON path ("training.learning_rate"), or "(text)" where there is no JSON object
    reason: str


class _Invalid(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(field, reason)
        self.failure = ParseFailure(field, reason)


def parse_self_edit(text: str) -> SelfEdit | ParseFailure:
    """The self-edit in the JSON object that starts at the text's first `{` (text around it is allowed, extra
    keys are ignored), or the first thing wrong with it."""
    start = text.find("{")
    if start < 0:
        return ParseFailure("(text)", "no JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError) as e:  # a JSONDecodeError, or a number or nesting past Python's limits
        return ParseFailure("(text)", f"not valid JSON ({e})")
    try:
        data = _get(obj, "data_generation", "object")
        switches = [_get(data, f"data_generation.{key}", "boolean") for _, key in _SWITCHES]
        training = _get(obj, "training", "object")
        strategy = _get(training, "training.strategy", "string")
        if strategy not in STRATEGIES:
            raise _Invalid("training.strategy", f"unknown strategy {strategy!r}, expected one of {list(STRATEGIES)}")
        rate = _get(training, "training.learning_rate", "number")
        if not 0 < rate <= sys.float_info.max:
            raise _Invalid("training.learning_rate", f"must be a finite number above 0, got {repr(rate)[:20]}")
        epochs = _get(training, "training.num_train_epochs", "integer")
        if epochs < 0:
            raise _Invalid("training.num_train_epochs", f"must be at least 0, got {epochs}")
    except _Invalid as e:
        return e.failure
    return SelfEdit(*switches, loss_on_all_tokens=STRATEGIES[strategy], learning_rate=float(rate), epochs=epochs)


def _get(obj: dict, path: str, kind: str):
    """The value at path's last key in obj, which must be of the JSON type kind."""
    key = path.rpartition(".")[2]
    if key not in obj:
        raise _Invalid(path, f"missing key {key!r}")
    if not _KINDS[kind](obj[key]):
        raise _Invalid(path, f"expected {kind}, got {_NAMES[type(obj[key])]}")
    return obj[key]


def to_json(edit: SelfEdit) -> str:
    """The canonical JSON text of a self-edit, as a model is asked to write it."""
    strategy = next(name for name, all_tokens in STRATEGIES.items() if all_tokens == edit.loss_on_all_tokens)
    return json.dumps({
        "data_generation": {key: getattr(edit, family) for family, key in _SWITCHES},
        "training": {"strategy": strategy, "learning_rate": edit.learning_rate, "num_train_epochs": edit.epochs},
    })
