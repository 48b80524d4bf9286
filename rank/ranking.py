"""The rank stage: NCF rescoring of recall candidates, and the per-user lists built offline.

`rank_candidates` orders one user's merged candidates by NCF score. For a known user whose
request brings no context (no recent items, nothing excluded) that result depends on the
bundle alone, so `precompute_rankings` computes it for every user when the bundle is built
and the server reads it back instead of repeating recall and rank for each request: the
split between an offline builder and an online server that engines such as Gorse make.
Requests with context (recent items, exclusions) and new users still go through recall and
rank online.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from movierec.recall.channels import Merged
from movierec.recall.recaller import Recaller

from .ncf import NCFScorer


@dataclass
class Ranked:
    """One user's candidates, best first."""

    items: np.ndarray          # int64 contiguous item ids
    scores: np.ndarray         # float32 NCF probability
    channel_mask: np.ndarray   # int64 bitmask of the recall channels that proposed each item


def rank_candidates(scorer: NCFScorer, user: int, user_features: np.ndarray, merged: Merged) -> Ranked:
    logits = scorer.score(user, user_features, merged.items)
    order = np.argsort(-logits, kind="stable")
    probabilities = (1.0 / (1.0 + np.exp(-logits[order]))).astype(np.float32)
    return Ranked(merged.items[order], probabilities, merged.channel_mask[order])


@dataclass
class PrecomputedRankings:
    """Every known user's `Ranked` list for a request without context, as CSR arrays."""

    indptr: np.ndarray       # (num_users + 2,) int64; row 0 (unknown user) is empty
    items: np.ndarray        # int32
    scores: np.ndarray       # float32
    channel_mask: np.ndarray  # uint8

    def of(self, user: int) -> Ranked:
        start, end = self.indptr[user], self.indptr[user + 1]
        return Ranked(self.items[start:end].astype(np.int64), self.scores[start:end],
                      self.channel_mask[start:end].astype(np.int64))

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 2

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, indptr=self.indptr, items=self.items, scores=self.scores,
                     channel_mask=self.channel_mask)

    @classmethod
    def load(cls, path: str | Path) -> "PrecomputedRankings":
        with np.load(path, allow_pickle=False) as data:
            rankings = cls(data["indptr"], data["items"], data["scores"], data["channel_mask"])
        if rankings.indptr[-1] != len(rankings.items) or not (
                len(rankings.items) == len(rankings.scores) == len(rankings.channel_mask)):
            raise ValueError("precomputed rankings: arrays of inconsistent lengths")
        return rankings


def precompute_rankings(recaller: Recaller, scorer: NCFScorer, user_features: np.ndarray,
                        num_users: int, advance: Callable[[int], None] | None = None) -> PrecomputedRankings:
    """Recall and rank for users 1..num_users exactly as a request without context would."""
    lists = [Ranked(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))]
    for user in range(1, num_users + 1):
        merged, _ = recaller.recall(user)
        lists.append(rank_candidates(scorer, user, user_features[user], merged))
        if advance:
            advance(1)
    lengths = [len(r.items) for r in lists]
    return PrecomputedRankings(
        indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.concatenate([r.items for r in lists]).astype(np.int32),
        scores=np.concatenate([r.scores for r in lists]).astype(np.float32),
        channel_mask=np.concatenate([r.channel_mask for r in lists]).astype(np.uint8),
    )
