"""ARC grids: the hashable type, the check of grids in JSON data, and the text form a model reads and writes."""

from seal_dist.config import UserError

Grid = tuple[tuple[int, ...], ...]  # rows of colours 0-9
Pair = tuple[Grid, Grid]  # a demonstration: (input, output)
MAX_SIDE = 30
_DIGITS = frozenset("0123456789")


class GridError(UserError):
    """JSON data that is not an ARC grid."""


def format_grid(g: Grid) -> str:
    """One line a row, cells separated by single spaces."""
    return "\n".join(" ".join(map(str, row)) for row in g)


def parse_grid(text: str) -> Grid | None:
    """The grid at the start of a model's answer, or None where there is none.

    The grid is the run of lines that start with a number, after any blank lines; a blank line or one that
    starts otherwise (chatter) ends it. None where it has no rows, where a row holds a token that is not one
    digit 0-9 (`12`, `3a`), where rows differ in length, or where a side exceeds MAX_SIDE.
    """
    rows: list[tuple[int, ...]] = []
    for line in text.lstrip().splitlines():
        tokens = line.split()
        if not tokens or not tokens[0].isdecimal():
            break
        if not all(t in _DIGITS for t in tokens):
            return None
        rows.append(tuple(map(int, tokens)))
    if not rows or len({len(r) for r in rows}) > 1 or max(len(rows), len(rows[0])) > MAX_SIDE:
        return None
    return tuple(rows)


def as_grid(obj: object, where: str) -> Grid:
    """obj (JSON data) as a grid: a non-empty list of equal-length non-empty lists of ints 0-9, at most
    MAX_SIDE a side. Raises GridError whose message starts with where and names the problem."""
    if not isinstance(obj, list) or not obj:
        raise GridError(f"{where}: expected a non-empty list of rows, got {_shown(obj)}")
    if len(obj) > MAX_SIDE:
        raise GridError(f"{where}: {len(obj)} rows, at most {MAX_SIDE} allowed")
    for r, row in enumerate(obj):
        if not isinstance(row, list) or not row:
            raise GridError(f"{where}: row {r}: expected a non-empty list of cells, got {_shown(row)}")
        if len(row) != len(obj[0]):
            raise GridError(f"{where}: row {r} has {len(row)} cells, row 0 has {len(obj[0])}")
        for c, cell in enumerate(row):
            if type(cell) is not int or not 0 <= cell <= 9:
                raise GridError(f"{where}: row {r}, cell {c}: expected a colour 0-9, got {_shown(cell)}")
    if len(obj[0]) > MAX_SIDE:
        raise GridError(f"{where}: {len(obj[0])} columns, at most {MAX_SIDE} allowed")
    return tuple(tuple(row) for row in obj)


def _shown(value: object) -> str:
    """A short value as written, a long one by its type."""
    text = repr(value)
    return text if len(text) <= 20 else type(value).__name__
