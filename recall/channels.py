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

from .index import ItemIndex

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


def search_excluding(index: ItemIndex, query: np.ndarray, k: int, exclude: np.ndarray, channel: str) -> Candidates:
    """Top-k items for `query`, asking for enough extra to make up for excluded ones."""
    scores, ids = index.search(query[None, :], k + len(exclude))
    scores, ids = scores[0], ids[0]
    keep = (ids > 0) & ~np.isin(ids, exclude)
    return Candidates(channel, ids[keep][:k].astype(np.int64), scores[keep][:k].astype(np.float32))


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
              exclude: np.ndarray) -> Candidates:
    """Neighbours of the last few seed items, more recent seeds weighing more."""
    seeds = seeds[seeds > 0][-ITEM2ITEM_SEEDS:]
    if len(seeds) == 0:
        return Candidates.empty("item2item")
    weights = 0.5 ** np.arange(len(seeds))[::-1]
    ids = neighbour_ids[seeds].ravel()
    scores = (neighbour_scores[seeds] * weights[:, None]).ravel()
    totals = np.bincount(ids, weights=scores, minlength=len(neighbour_ids)).astype(np.float32)
    totals[0] = 0.0
    totals[exclude] = 0.0
    top = np.argsort(-totals, kind="stable")[:k]
    top = top[totals[top] > 0]
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


def merge(results: list[Candidates], quotas: dict[str, int], exclude: np.ndarray) -> Merged:
    """Fill each channel's quota in turn from its own list, skipping excluded and taken items;
    what a channel that ran dry left unfilled goes to the others' next candidates, in order."""
    taken = np.zeros(0, dtype=np.int64)
    primary = []

    def take(result: Candidates, count: int) -> None:
        nonlocal taken
        fresh = result.items[~np.isin(result.items, exclude) & ~np.isin(result.items, taken)]
        _, first = np.unique(fresh, return_index=True)
        fresh = fresh[np.sort(first)][:max(count, 0)]
        taken = np.concatenate([taken, fresh])
        primary.extend([CHANNELS.index(result.channel)] * len(fresh))

    for result in results:
        take(result, quotas.get(result.channel, 0))
    total = sum(quotas.get(result.channel, 0) for result in results)
    for result in results:
        take(result, total - len(taken))
    mask = np.zeros(len(taken), dtype=np.int64)
    for result in results:
        mask[np.isin(taken, result.items)] |= CHANNEL_BIT[result.channel]
    return Merged(taken, mask, np.array(primary, dtype=np.int64))
