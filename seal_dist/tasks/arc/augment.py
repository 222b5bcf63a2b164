"""Invertible augmentations of ARC grids, by family: each maps every grid of a task and has an exact inverse.

Operations along the columns are those along the rows conjugated by a transpose, so each is written once.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from seal_dist.tasks.arc.grids import Grid

GridMap = Callable[[Grid], Grid]


class ShapeError(ValueError):
    """A grid that an inverse cannot undo: a side that is not a multiple of the factor it divides by."""


@dataclass(frozen=True)
class Transform:
    name: str
    forward: GridMap
    inverse: GridMap


def _chained(maps: Iterable[GridMap]) -> GridMap:
    return partial(_run, tuple(maps))


def _run(maps: tuple[GridMap, ...], g: Grid) -> Grid:
    for f in maps:
        g = f(g)
    return g


def _transpose(g: Grid) -> Grid:
    return tuple(zip(*g))


def _along(axis: int, rows_op: GridMap) -> GridMap:
    """rows_op, written for axis 0 (the sequence of rows), applied along axis 0 or 1."""
    return rows_op if axis == 0 else _chained((_transpose, rows_op, _transpose))


def _part(g: Grid, parts: int) -> int:
    """The length of one of `parts` equal blocks of rows."""
    if len(g) % parts:
        raise ShapeError(f"{len(g)} rows do not split into {parts} equal parts")
    return len(g) // parts


def _reversed(g: Grid) -> Grid:
    return g[::-1]


def _mirrored(before: bool, g: Grid) -> Grid:
    return g[::-1] + g if before else g + g[::-1]


def _block(parts: int, index: int, g: Grid) -> Grid:
    n = _part(g, parts)
    return g[index * n:(index + 1) * n]


def _rolled(shift: int, g: Grid) -> Grid:
    shift %= len(g)
    return g[-shift:] + g[:-shift]


def _stretched(factor: int, g: Grid) -> Grid:
    return tuple(row for row in g for _ in range(factor))


def _strided(factor: int, g: Grid) -> Grid:
    _part(g, factor)
    return g[::factor]


def _tiled(times: int, g: Grid) -> Grid:
    return g * times


def _rows_transform(name: str, axes: tuple[int, ...], forward: GridMap, inverse: GridMap) -> Transform:
    """A transform that applies a rows operation along each of axes (they commute), undone likewise."""
    return Transform(name, _chained(_along(a, forward) for a in axes), _chained(_along(a, inverse) for a in axes))


def _rotation(quarter_turns: int) -> Transform:
    clockwise = _chained((_reversed, _transpose))
    return Transform(f"rotate_{90 * quarter_turns}", _chained([clockwise] * quarter_turns),
                     _chained([clockwise] * (4 - quarter_turns)))


def _then(first: Transform, second: Transform) -> Transform:
    return Transform(f"{first.name}+{second.name}", _chained((first.forward, second.forward)),
                     _chained((second.inverse, first.inverse)))


def _identity(g: Grid) -> Grid:
    return g


IDENTITY = Transform("identity", _identity, _identity)
TRANSPOSE = Transform("transpose", _transpose, _transpose)
ROTATE_90, ROTATE_180, ROTATE_270 = (_rotation(k) for k in (1, 2, 3))
FLIP_0, FLIP_1 = (_rows_transform(f"flip_{a}", (a,), _reversed, _reversed) for a in (0, 1))
REFLECTS = tuple(
    _rows_transform(f"reflect_{a}_{'before' if before else 'after'}", (a,), partial(_mirrored, before),
                    partial(_block, 2, int(before)))
    for a in (0, 1) for before in (False, True)
)  # the grid and its mirror along axis a, the mirror after or before it; undone by keeping the original half
TRANSLATE = _rows_transform("translate_1_1", (0, 1), partial(_rolled, 1), partial(_rolled, -1))
RESOLUTION, HEIGHT, WIDTH = (
    _rows_transform(f"{name}_x2", axes, partial(_stretched, 2), partial(_strided, 2))
    for name, axes in (("resolution", (0, 1)), ("height", (0,)), ("width", (1,)))
)  # each cell stretched along axes; undone by keeping every second row or column
REPEATS = tuple(
    _rows_transform(f"repeat_{name}", axes, partial(_tiled, 2), partial(_block, 2, 0))
    for name, axes in (("0", (0,)), ("1", (1,)), ("both", (0, 1)))
)
_GEOMETRIC = (ROTATE_90, ROTATE_180, ROTATE_270, FLIP_0, FLIP_1, TRANSPOSE)

FAMILIES: dict[str, tuple[Transform, ...]] = {
    "basic": (*_GEOMETRIC, *REFLECTS, TRANSLATE),
    "size": (RESOLUTION, HEIGHT, WIDTH),
    "chain": tuple(_then(t, RESOLUTION) for t in _GEOMETRIC),
    "repeat": REPEATS,
}
INFERENCE = (TRANSPOSE, FLIP_0, FLIP_1, ROTATE_90, ROTATE_180)  # the transforms of the test queries
