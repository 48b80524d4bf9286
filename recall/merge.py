"""The merger: per-channel quotas over the channels' candidate lists, deduplicated, with each
channel's score and rank kept for every candidate (the ranker's recall-signal features).

`merge` fills each channel's quota in turn from its own list, skipping items the request does
not allow and items an earlier channel took; what a channel that ran dry left unfilled goes to the others' next
candidates, in channel order. A channel that did not apply to the request (None) has no quota.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .channel import Candidates
from .context import ItemMask


@dataclass
class Merged:
    channels: tuple           # channel names, in the recaller's order
    items: np.ndarray         # int64, in merge order
    primary: np.ndarray       # int64 index into `channels`: the channel whose quota took the item
    scores: np.ndarray        # (N, C) float32: each channel's score for the item; NaN where it did not propose it
    ranks: np.ndarray         # (N, C) int32: the item's 0-based rank in each channel's list; -1 where not proposed

    @property
    def proposed(self) -> np.ndarray:
        """(N, C) bool: which channels proposed each candidate."""
        return self.ranks >= 0

    def subset(self, rows: np.ndarray) -> "Merged":
        """The candidates at `rows`, in that order."""
        return Merged(self.channels, self.items[rows], self.primary[rows], self.scores[rows], self.ranks[rows])

    @classmethod
    def unproposed(cls, channels: tuple, items: np.ndarray) -> "Merged":
        """Items no channel proposed, without scores yet (see `Recaller.score_items`)."""
        size = (len(items), len(channels))
        return cls(tuple(channels), items, np.full(len(items), -1, dtype=np.int64),
                   np.full(size, np.nan, dtype=np.float32), np.full(size, -1, dtype=np.int32))


def channel_signals(results: list[Candidates | None], items: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ranks) of `items` in each channel's list, as in `Merged`."""
    scores = np.full((len(items), len(results)), np.nan, dtype=np.float32)
    ranks = np.full((len(items), len(results)), -1, dtype=np.int32)
    rank_of = np.full(num_items + 1, -1, dtype=np.int32)  # one channel's ranks by item id, reset after each
    for column, result in enumerate(results):
        if result is None or not len(result.items):
            continue
        rank_of[result.items] = np.arange(len(result.items), dtype=np.int32)
        found = rank_of[items]
        rank_of[result.items] = -1
        ranks[:, column] = found
        scores[:, column] = np.where(found >= 0, result.scores[found], np.nan)
    return scores, ranks


def merge(channels: tuple, results: list[Candidates | None], quotas: dict[str, int], allowed: ItemMask) -> Merged:
    """`results[j]` is the list of channel `channels[j]`; only `allowed` items come out."""
    unavailable = ~allowed.array
    taken, primary = [], []
    cursor = [0] * len(results)

    def take(position: int, count: int) -> int:
        if results[position] is None:
            return 0
        rest = results[position].items[cursor[position]:]
        fresh = np.flatnonzero(~unavailable[rest])[:max(count, 0)]
        if len(fresh):
            cursor[position] += int(fresh[-1]) + 1
            chosen = rest[fresh]
            unavailable[chosen] = True
            taken.append(chosen)
            primary.append(np.full(len(chosen), position))
        return len(fresh)

    short = 0
    for position, name in enumerate(channels):
        if results[position] is not None:
            quota = quotas.get(name, 0)
            short += quota - take(position, quota)
    for position in range(len(results)):
        if short <= 0:
            break
        short -= take(position, short)
    items = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
    scores, ranks = channel_signals(results, items, len(allowed) - 1)
    return Merged(tuple(channels), items, np.concatenate(primary) if primary else np.zeros(0, dtype=np.int64),
                  scores, ranks)
