"""The multiple-choice knapsack behind `--allocation knapsack`: one rung per unit, least total cost, within bytes.

Each unit (a layer, or a tied pair stored once) has one option per rung of its ladder: (bytes, cost). The
solver picks one option per unit so that the bytes fit the capacity and the summed cost is smallest, by
dynamic programming over capacity slots. Bytes above each unit's smallest option are counted in slots,
each option's rounded *up* and the capacity rounded *down*, so every plan it returns fits the real budget
(and the all-smallest plan is always found when it fits); it is optimal for the rounded sizes, which can
cost at most (number of units x slot) bytes of the budget (about 0.2 % at the default 50,000 slots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_SLOTS = 50_000


@dataclass(frozen=True)
class Option:
    bytes: int
    cost: float


def solve(units: dict[str, list[Option]], capacity: int, slots: int = DEFAULT_SLOTS) -> dict[str, int] | None:
    """{unit: chosen option index} minimising the total cost with total bytes <= capacity; None if no choice
    fits. Ties go to the lower index (the higher-precision rung, on the ladders' order)."""
    # Bytes are counted above each unit's smallest option, so the all-smallest choice needs no slots and
    # stays feasible however coarse the slots are; rounding applies to the increments only.
    floor = {name: min(o.bytes for o in options) for name, options in units.items()}
    capacity -= sum(floor.values())
    if capacity < 0:
        return None
    slot = max(1, math.ceil(capacity / slots))
    width = capacity // slot + 1
    names = list(units)
    best = np.zeros(width)  # best[k]: least cost of the units so far within k slots
    choices = np.zeros((len(names), width), dtype=np.int16)
    for row, name in enumerate(names):
        nxt = np.full(width, np.inf)
        pick = np.zeros(width, dtype=np.int16)
        for index, option in enumerate(units[name]):
            need = math.ceil((option.bytes - floor[name]) / slot)
            if need >= width:
                continue
            candidate = np.full(width, np.inf)
            candidate[need:] = best[: width - need] + option.cost
            better = candidate < nxt  # strict: an earlier (higher) rung keeps a tie
            nxt[better], pick[better] = candidate[better], index
        best, choices[row] = nxt, pick
    if not np.isfinite(best[-1]):
        return None
    chosen, k = {}, width - 1
    for row in range(len(names) - 1, -1, -1):
        index = int(choices[row, k])
        chosen[names[row]] = index
        k -= math.ceil((units[names[row]][index].bytes - floor[names[row]]) / slot)
    return chosen
