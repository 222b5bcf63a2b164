"""How a knowledge-incorporation self-edit becomes an update's training sequences, as the SEAL reference
does it. No config and no model: the GPU benchmark imports this on a bare machine."""


def self_edit_segments(self_edit: str) -> list[str]:
    """Splits a self-edit into training segments as the SEAL reference does: blocks separated by `---`,
    one segment per non-empty line, and a leading non-list line dropped when a numbered list follows."""
    segments = []
    for block in self_edit.split("---"):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if len(lines) >= 2 and not lines[0].startswith("1.") and lines[1].startswith("1."):
            lines = lines[1:]
        segments.extend(lines)
    return segments


def update_texts(title: str, passage: str, self_edit: str | None, max_sequences: int | None) -> tuple[str, ...]:
    """Title-prefixed self-edit segments (the first `max_sequences`; None: all) plus the passage itself; ()
    for no update; the passage alone for self_edit=""."""
    if self_edit is None:
        return ()
    return (*(f"{title}\n{s}" for s in self_edit_segments(self_edit)[:max_sequences]), f"{title}\n{passage}")
