"""Two attempts voted from the answers to an ARC test input's queries."""

from collections import Counter

from seal_dist.tasks.arc.grids import Grid

_NOMINEES = 3


def vote(candidates: list[tuple[str, Grid]]) -> tuple[Grid, Grid]:
    """Attempts 1 and 2 from (group, grid) answers; ((0,),) for both where there is none.

    Each pool (the answers of one group, and all answers together) nominates 3 grids: its 3 most common, ties
    going to the first given; a pool with fewer distinct grids repeats its most common one. The grids with the
    most nominations win, ties going to the more frequent answer overall, then to the first nominated. Attempt 2
    repeats attempt 1 where only one grid was nominated.

    The reference fills those places with the pool's row-wise and column-wise majority grids (among grids of
    its most common shape, the most common row at each index; likewise columns). Under the ties above both are
    the most common grid whenever a pool has fewer than 3 distinct grids, so repeating it is the same vote.
    """
    if not candidates:
        return ((0,),), ((0,),)
    pools: dict[str, list[Grid]] = {}
    for group, grid in candidates:
        pools.setdefault(group, []).append(grid)
    everything = [grid for _, grid in candidates]
    nominations = Counter(g for pool in (everything, *pools.values()) for g in _nominees(pool))
    frequency = Counter(everything)
    ranked = sorted(nominations, key=lambda g: (-nominations[g], -frequency[g]))  # stable: first nominated first
    return ranked[0], ranked[min(1, len(ranked) - 1)]


def _nominees(pool: list[Grid]) -> list[Grid]:
    # Counter.most_common orders equal counts by first appearance.
    top = [g for g, _ in Counter(pool).most_common(_NOMINEES)]
    return top + [top[0]] * (_NOMINEES - len(top))
