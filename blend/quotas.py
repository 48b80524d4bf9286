"""The blender: popular / new / personalized slots with quotas, dedup and seen-item removal.

Slot sizes for n items follow the largest-remainder rule: each slot gets floor(n * share),
and the items left go to the slots with the largest remainders, ties to personalized, then
new, then popular. With the default shares 20/30/50 that is 2/3/5 for n = 10, 0/0/1 for
n = 1, 1/1/1 for n = 3 and 7/11/19 for n = 37.

Slots fill in the order personalized, new, popular, each skipping items already taken,
blocked (seen, recent, excluded) or filtered out; a slot that runs dry leaves its share to
the others, so exactly n items come back whenever the catalogue allows. The list comes in
that order, or by score (`Blended.by_score`) where one model scored every slot.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SLOTS = ("personalized", "new", "popular")  # fill order, and tie order for remainders
MAX_N = 200  # the most items one request may ask for
DEFAULT_SHARES = {"popular": 0.2, "new": 0.3, "personalized": 0.5}


def slot_sizes(n: int, shares: dict[str, float]) -> dict[str, int]:
    return dict(_slot_sizes(n, tuple(max(float(shares.get(s, 0.0)), 0.0) for s in SLOTS)))


@functools.lru_cache(maxsize=1024)
def _slot_sizes(n: int, shares_in_slot_order: tuple) -> tuple:
    """Cached per (n, shares): the same few combinations come with nearly every request."""
    shares = dict(zip(SLOTS, shares_in_slot_order))
    total = sum(shares.values())
    if n < 0 or total <= 0:
        raise ValueError("n must be >= 0 and at least one share positive")
    exact = {s: n * shares[s] / total for s in SLOTS}
    sizes = {s: int(np.floor(exact[s] + 1e-9)) for s in SLOTS}
    leftover = n - sum(sizes.values())
    by_remainder = sorted(SLOTS, key=lambda s: (-(exact[s] - sizes[s]), SLOTS.index(s)))
    for slot in by_remainder[:leftover]:
        sizes[slot] += 1
    return tuple(sizes.items())


@dataclass
class SlotList:
    """A slot's candidates, best first, with the score each would be returned with."""

    items: np.ndarray
    scores: np.ndarray


@dataclass
class Blended:
    items: np.ndarray
    scores: np.ndarray
    slots: np.ndarray  # index into SLOTS
    rows: np.ndarray   # each item's position in its slot's list

    def by_score(self) -> "Blended":
        """The same items, highest score first (ties in slot order): for slots whose scores
        come from one model, so that the quotas decide which items a list holds and the
        model where each goes."""
        order = np.argsort(-self.scores, kind="stable")
        return Blended(self.items[order], self.scores[order], self.slots[order], self.rows[order])


def blend(n: int, shares: dict[str, float], lists: dict[str, SlotList], allowed: np.ndarray) -> Blended:
    """Up to n items; `allowed` is a (num_items + 1,) mask of items that may be returned."""
    allowed = allowed.copy()
    allowed[0] = False
    sizes = slot_sizes(n, shares)
    cursor = {slot: 0 for slot in SLOTS}
    picked: dict[str, list[np.ndarray]] = {slot: [] for slot in SLOTS}

    def take(slot: str, count: int) -> int:
        candidates = lists.get(slot)
        if candidates is None or count <= 0:
            return 0
        # scan a window a few times the count first: the lists run to the whole catalogue
        start, window, found = cursor[slot], 4 * count + 16, 0
        while found < count and start < len(candidates.items):
            part = candidates.items[start:start + window]
            ok = np.flatnonzero(allowed[part])[:count - found]
            if len(ok):
                chosen = start + ok
                allowed[candidates.items[chosen]] = False
                picked[slot].append(chosen)
                found += len(ok)
            start = int(chosen[-1]) + 1 if found == count else start + len(part)
            window *= 4
        cursor[slot] = start
        return found

    short = 0
    for slot in SLOTS:
        short += sizes[slot] - take(slot, sizes[slot])
    for slot in SLOTS:
        if short <= 0:
            break
        short -= take(slot, short)

    items, scores, slots, positions = [], [], [], []
    for index, slot in enumerate(SLOTS):
        if picked[slot]:
            rows = np.concatenate(picked[slot])
            items.append(lists[slot].items[rows])
            scores.append(lists[slot].scores[rows])
            slots.append(np.full(len(rows), index))
            positions.append(rows)
    if not items:
        empty = np.zeros(0, np.int64)
        return Blended(empty, np.zeros(0, np.float32), empty, empty)
    return Blended(np.concatenate(items).astype(np.int64), np.concatenate(scores).astype(np.float32),
                   np.concatenate(slots).astype(np.int64), np.concatenate(positions).astype(np.int64))
