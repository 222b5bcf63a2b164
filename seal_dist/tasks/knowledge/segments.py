"""How a knowledge-incorporation self-edit becomes an update's training sequences, by the SEAL reference's rules
(../shared/SEAL_METHOD.md, domain 1). No config and no model: the GPU benchmark imports this on a bare machine."""

import re

QUESTION = re.compile(r"^Question \d+:", re.MULTILINE)
IMPLICATIONS = "\nImplications:"


def self_edit_segments(self_edit: str, implications_only: bool) -> list[str]:
    """The self-edit's training segments:
    - a self-QA self-edit (it has "Question N:" lines and "Answer:") is split before each "Question N:" line, so
      that every question stays with its answer; the first segment, which continues the prompt's "Question 1: ",
      gets that prefix back;
    - any other self-edit gives one segment per non-empty line of its `---`-separated blocks, the leading line
      of the whole self-edit dropped when it is not a list item and the next line starts the list ("1.").
    `implications_only` (the newer reference) first keeps only the text after an "Implications:" line."""
    if implications_only and IMPLICATIONS in self_edit:
        self_edit = self_edit.split(IMPLICATIONS, 1)[1]
    if QUESTION.search(self_edit) and "Answer:" in self_edit:
        pieces = [p.strip() for p in QUESTION.split(self_edit)]
        firsts = [m.group() for m in QUESTION.finditer(self_edit)]
        return [f"{label} {p}" for label, p in zip(["Question 1:", *firsts], pieces) if p]
    lines = [line.strip() for block in self_edit.split("---") for line in block.splitlines() if line.strip()]
    if len(lines) >= 2 and not lines[0].startswith("1.") and lines[1].startswith("1."):
        lines = lines[1:]
    return lines


def update_texts(title: str, passage: str, self_edit: str | None, max_sequences: int | None,
                 implications_only: bool) -> tuple[str, ...]:
    """Title-prefixed self-edit segments (the first `max_sequences`; None: all) plus the passage itself; ()
    for no update; the passage alone for self_edit=""."""
    if self_edit is None:
        return ()
    segments = self_edit_segments(self_edit, implications_only)[:max_sequences]
    return (*(f"{title}\n{s}" for s in segments), f"{title}\n{passage}")
