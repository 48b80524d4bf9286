"""Recall channels and the merger.

Each channel turns what is known about a user into scored candidate items:

- `sasrec`: the SASRec state after the user's sequence (precomputed from the stored history,
  recomputed when a request brings recent items) -> item embeddings;
- `ncf`: the NCF GMF user embedding -> GMF item embeddings (known users only);
- `poster`: the mean poster vector of the user's recent well-rated items -> poster vectors;
- `item2item`: co-occurrence neighbours of the user's last items, which works from a single
  item and so carries users with very short histories.

`merge` takes per-channel quotas, removes seen and excluded items, dedups across channels
and records every channel that proposed each candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .index import AllowedItems, ItemIndex

CHANNELS = ("sasrec", "ncf", "poster", "item2item")
CHANNEL_BIT = {name: 1 << i for i, name in enumerate(CHANNELS)}
WELL_RATED = 4
POSTER_HISTORY = 20
ITEM2ITEM_SEEDS = 5


@dataclass
class Candidates:
    channel: str
    items: np.ndarray   # int64 contiguous item ids, best first
    scores: np.ndarray  # float32

    @classmethod
    def empty(cls, channel: str) -> "Candidates":
        return cls(channel, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


@dataclass
class Merged:
    items: np.ndarray        # int64, in merge order
    channel_mask: np.ndarray  # int64 bitmask of CHANNEL_BIT per item: every channel that proposed it
    primary: np.ndarray      # index into CHANNELS of the channel whose quota took the item

    def channels_of(self, row: int) -> list[str]:
        return [name for name in CHANNELS if self.channel_mask[row] & CHANNEL_BIT[name]]


def search(index: ItemIndex, query: np.ndarray, k: int, allowed: AllowedItems, channel: str) -> Candidates:
    """Top-k allowed items for `query`."""
    scores, ids = index.search(query[None, :], k, allowed)
    keep = ids[0] > 0
    return Candidates(channel, ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))


def item2item_neighbours(sequences_indptr: np.ndarray, sequences_items: np.ndarray, num_items: int,
                         k: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(num_items + 1, k) neighbour ids and cosine co-occurrence scores over users' histories."""
    import scipy.sparse as sp

    users = np.repeat(np.arange(len(sequences_indptr) - 1), np.diff(sequences_indptr))
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, sequences_items)),
                           shape=(len(sequences_indptr) - 1, num_items + 1))
    matrix.data[:] = 1.0  # repeated interactions count once
    co = (matrix.T @ matrix).toarray()
    counts = np.sqrt(np.maximum(np.diag(co), 1.0))
    co /= counts[:, None] * counts[None, :]
    np.fill_diagonal(co, 0.0)
    co[0, :] = 0.0
    co[:, 0] = 0.0
    k = min(k, num_items)
    ids = np.argpartition(-co, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(co, ids, axis=1)
    order = np.argsort(-scores, axis=1)
    ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
    ids[scores <= 0] = 0
    return ids.astype(np.int64), scores.astype(np.float32)


def item2item(neighbour_ids: np.ndarray, neighbour_scores: np.ndarray, seeds: np.ndarray, k: int,
              allowed: AllowedItems) -> Candidates:
    """Neighbours of the last few seed items, more recent seeds weighing more."""
    seeds = seeds[seeds > 0][-ITEM2ITEM_SEEDS:]
    if len(seeds) == 0:
        return Candidates.empty("item2item")
    weights = 0.5 ** np.arange(len(seeds))[::-1]
    ids = neighbour_ids[seeds].ravel()
    scores = (neighbour_scores[seeds] * weights[:, None]).ravel()
    totals = np.bincount(ids, weights=scores, minlength=len(neighbour_ids)).astype(np.float32)
    totals[~allowed.mask] = 0.0
    candidates = np.flatnonzero(totals > 0)
    top = candidates[np.argsort(-totals[candidates], kind="stable")[:k]]
    return Candidates("item2item", top.astype(np.int64), totals[top])


def mean_poster_query(poster_vectors: np.ndarray, has_poster: np.ndarray, items: np.ndarray,
                      ratings: np.ndarray | None) -> np.ndarray | None:
    """Mean poster of the most recent well-rated items that have a poster (all items when unrated)."""
    if ratings is not None:
        items = items[ratings >= WELL_RATED]
    items = items[has_poster[items] > 0][-POSTER_HISTORY:]
    if len(items) == 0:
        return None
    query = poster_vectors[items].mean(axis=0)
    norm = np.linalg.norm(query)
    return query / norm if norm > 0 else None


def merge(results: list[Candidates], quotas: dict[str, int], blocked: np.ndarray) -> Merged:
    """Fill each channel's quota in turn from its own list, skipping blocked and taken items;
    what a channel that ran dry left unfilled goes to the others' next candidates, in order.
    `blocked` is a boolean mask over item ids (seen, recent, excluded)."""
    unavailable = blocked.copy()
    taken, primary = [], []
    cursor = [0] * len(results)

    def take(position: int, count: int) -> int:
        result = results[position]
        rest = result.items[cursor[position]:]
        fresh = np.flatnonzero(~unavailable[rest])[:max(count, 0)]
        if len(fresh):
            cursor[position] += int(fresh[-1]) + 1
            chosen = rest[fresh]
            unavailable[chosen] = True
            taken.append(chosen)
            primary.append(np.full(len(chosen), CHANNELS.index(result.channel)))
        return len(fresh)

    short = 0
    for position, result in enumerate(results):
        quota = quotas.get(result.channel, 0)
        short += quota - take(position, quota)
    for position in range(len(results)):
        if short <= 0:
            break
        short -= take(position, short)
    items = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
    bits = np.zeros(len(blocked), dtype=np.int64)
    for result in results:
        bits[result.items] |= CHANNEL_BIT[result.channel]
    return Merged(items, bits[items], np.concatenate(primary) if primary else np.zeros(0, dtype=np.int64))
