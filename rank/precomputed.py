"""Every known user's ranked candidates, computed when the bundle is built.

For a known user whose request brings no context (no recent items, nothing excluded, no
filters that reach recall) the result of recall and rank depends on the bundle alone, so
`precompute_rankings` computes it for every user offline and the server reads it back instead
of repeating recall and rank for each request: the split between an offline builder and an
online server that engines such as Gorse make. Requests with context and new users still go
through recall and rank online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from movierec.files import load_npz, save_npz
from movierec.recall.context import RequestContext
from movierec.recall.recaller import Recaller

from .ranker import Ranked, Ranker, rank


@dataclass
class PrecomputedRankings:
    """`Ranked` lists of users 0..num_users as CSR arrays; row 0 (the unknown user) is empty."""

    channels: tuple            # recall channel names: bit j of `proposed` is channel j
    indptr: np.ndarray         # (num_users + 2,) int64
    items: np.ndarray          # int32
    scores: np.ndarray         # float32
    proposed: np.ndarray       # (len(items), ceil(C / 8)) uint8, the channel flags packed little-endian

    def of(self, user: int) -> Ranked:
        start, end = self.indptr[user], self.indptr[user + 1]
        flags = np.unpackbits(self.proposed[start:end], axis=1, count=len(self.channels), bitorder="little")
        return Ranked(self.channels, self.items[start:end].astype(np.int64), self.scores[start:end], flags.astype(bool))

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 2

    def save(self, path: str | Path) -> None:
        save_npz(path, {"channels": np.array(self.channels, dtype=str), "indptr": self.indptr, "items": self.items,
                        "scores": self.scores, "proposed": self.proposed})

    @classmethod
    def load(cls, path: str | Path) -> "PrecomputedRankings":
        data = load_npz(path)
        rankings = cls(tuple(data["channels"].tolist()), data["indptr"], data["items"], data["scores"],
                       data["proposed"])
        if rankings.indptr[-1] != len(rankings.items) or not (
                len(rankings.items) == len(rankings.scores) == len(rankings.proposed)):
            raise ValueError("precomputed rankings: arrays of inconsistent lengths")
        return rankings

    @classmethod
    def from_lists(cls, channels: tuple, lists: list[Ranked]) -> "PrecomputedRankings":
        lengths = [len(r.items) for r in lists]
        flags = np.concatenate([r.proposed for r in lists]) if lists else np.zeros((0, len(channels)), bool)
        return cls(tuple(channels), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   np.concatenate([r.items for r in lists]).astype(np.int32),
                   np.concatenate([r.scores for r in lists]).astype(np.float32),
                   np.packbits(flags, axis=1, bitorder="little"))


def precompute_rankings(recaller: Recaller, ranker: Ranker, contexts: Iterable[RequestContext],
                        advance: Callable[[int], None] | None = None) -> PrecomputedRankings:
    """Recall and rank for each context (users 1..N, in order, without request context)
    exactly as a request would."""
    names = recaller.names
    empty = np.zeros(0, np.int64)
    lists = [Ranked(names, empty, np.zeros(0, np.float32), np.zeros((0, len(names)), dtype=bool))]
    for context in contexts:
        merged, _ = recaller.recall(context)
        lists.append(rank(ranker, context, merged))
        if advance:
            advance(1)
    return PrecomputedRankings.from_lists(names, lists)
