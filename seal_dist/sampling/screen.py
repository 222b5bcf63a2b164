"""Model output is untrusted text. What every sampled self-edit is checked for, and cleaned of, before a task
reads it; the rates of each kind are a round's `self_edit/<kind>_frac` metrics.

- control: control characters, or U+FFFD (what bytes that are not UTF-8 decode to); removed (tabs and line
  breaks are kept).
- empty: nothing but whitespace once cleaned; the task's rule applies (knowledge: the passage alone trains;
  ARC: not JSON).
- repeats_prompt: the self-edit is a piece of its own prompt; trained as written (it is what the policy wrote).
- truncated: sampling stopped at `sampler.max_tokens`; kept as cut (ARC: cut JSON does not parse).
- unparsed: the task's parser rejects it even after `sampler.parse_tries` samples (its update trains nothing).
"""

import re
from collections.abc import Callable
from statistics import mean
from typing import NamedTuple

KINDS = ("control", "empty", "repeats_prompt", "truncated", "unparsed")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


class Sample(NamedTuple):
    text: str
    truncated: bool  # the engine stopped at its token budget


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def screen(raw: Sample, prompt: str, parse_failure: str | None) -> dict[str, bool]:
    text = clean(raw.text).strip()
    return {"control": _CONTROL.search(raw.text) is not None, "empty": not text,
            "repeats_prompt": bool(text) and text in prompt, "truncated": raw.truncated,
            "unparsed": parse_failure is not None}


def cleaned(samples: dict[str, list], prompts: dict[str, str], parse_failure: Callable[[str], str | None]
            ) -> tuple[dict[str, list[str]], list[dict[str, bool]]]:
    """Each context's samples (Samples, or their JSON lists) as clean texts, and every sample's flags."""
    texts, flags = {}, []
    for cid, raws in samples.items():
        raws = [Sample(*raw) for raw in raws]
        texts[cid] = [clean(raw.text) for raw in raws]
        flags += [screen(raw, prompts[cid], parse_failure(text)) for raw, text in zip(raws, texts[cid])]
    return texts, flags


def rates(flags: list[dict[str, bool]]) -> dict[str, float]:
    return {f"self_edit/{kind}_frac": mean(f[kind] for f in flags) for kind in KINDS} if flags else {}
