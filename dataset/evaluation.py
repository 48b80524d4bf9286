"""Offline evaluation: HR@K and NDCG@K under the sampled and the full-ranking protocol.

- sampled: the target is ranked against `num_negatives` (100) items the user never
  interacted with, drawn uniformly with a fixed seed (the SASRec paper's protocol);
- full: the target is ranked against every item except those in the user's input history.

Ranks are 0-based and ties count against the target, so a constant scorer cannot look good.
Any model plugs in as a `Scorer`: (users, their input sequences) -> (B, num_items + 1) scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .readers import DataError
from .sequences import LeaveLastOut, Sequences, item_counts

Scorer = Callable[[np.ndarray, list], np.ndarray]
DEFAULT_KS = (10,)
PROTOCOLS = ("sampled", "full")


@dataclass
class EvalTask:
    """What one evaluation stage (valid or test) scores: users, inputs, targets, negatives."""

    stage: str
    users: np.ndarray
    targets: np.ndarray
    history: Sequences
    negatives: np.ndarray  # (len(users), num_negatives)
    num_items: int

    def subset(self, keep: np.ndarray) -> "EvalTask":
        """The same task on the users where the boolean `keep` is set."""
        return EvalTask(self.stage, self.users[keep], self.targets[keep], self.history,
                        self.negatives[keep], self.num_items)


def sample_negatives(interacted: Sequences, users: np.ndarray, num_items: int,
                     count: int, seed: int) -> np.ndarray:
    """`count` distinct items per user, uniform over the items the user never touched."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), count), dtype=np.int64)
    for row, user in enumerate(users):
        seen = interacted.of(user)
        if num_items - len(np.unique(seen)) < count:
            raise DataError(f"user {user} has fewer than {count} unseen items to sample")
        picked = np.zeros(0, dtype=np.int64)
        while len(picked) < count:
            draw = rng.integers(1, num_items + 1, size=2 * count + len(seen))
            draw = draw[~np.isin(draw, seen)]
            picked = np.concatenate([picked, draw])
            _, first = np.unique(picked, return_index=True)
            picked = picked[np.sort(first)]
        out[row] = picked[:count]
    return out


def build_task(split: LeaveLastOut, stage: str, interacted: Sequences, num_items: int,
               num_negatives: int = 100, seed: int = 2018) -> EvalTask:
    """`interacted` is every user's full sequence, so negatives are truly never-seen items."""
    targets_all = split.targets(stage)
    users = np.flatnonzero(targets_all)
    return EvalTask(
        stage=stage,
        users=users,
        targets=targets_all[users],
        history=split.history(stage),
        negatives=sample_negatives(interacted, users, num_items, num_negatives, seed),
        num_items=num_items,
    )


def rank_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K and NDCG@K from 0-based ranks of the target (one relevant item per user)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if len(ranks) else 0.0
    return out


def sampled_ranks(scores: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    target_scores = np.take_along_axis(scores, targets[:, None], axis=1)
    negative_scores = np.take_along_axis(scores, negatives, axis=1)
    return (negative_scores >= target_scores).sum(axis=1)


def full_ranks(scores: np.ndarray, targets: np.ndarray, histories: list) -> np.ndarray:
    """Rank among all items but padding and the history (the target itself is never excluded)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories) if len(rows) else np.zeros(0, dtype=np.int64)
    target_scores = scores[np.arange(len(targets)), targets].copy()
    scores[rows, cols] = -np.inf
    scores[:, 0] = -np.inf
    scores[np.arange(len(targets)), targets] = target_scores
    return (scores >= target_scores[:, None]).sum(axis=1) - 1


def evaluate(scorer: Scorer, task: EvalTask, ks: Sequence[int] = DEFAULT_KS,
             batch_size: int = 512) -> dict[str, dict[str, float]]:
    """Both protocols from one scoring pass: {'sampled': {...}, 'full': {...}}."""
    sampled, full = [], []
    for start in range(0, len(task.users), batch_size):
        users = task.users[start:start + batch_size]
        histories = [task.history.of(u) for u in users]
        targets = task.targets[start:start + batch_size]
        scores = np.asarray(scorer(users, histories), dtype=np.float32)
        sampled.append(sampled_ranks(scores, targets, task.negatives[start:start + batch_size]))
        full.append(full_ranks(scores, targets, histories))
    return {
        "sampled": rank_metrics(np.concatenate(sampled), ks),
        "full": rank_metrics(np.concatenate(full), ks),
    }


def popularity_scorer(history: Sequences, num_items: int) -> Scorer:
    """The baseline: every user gets items ranked by interaction count in the input histories."""
    counts = item_counts(history.items, num_items).astype(np.float32)

    def score(users: np.ndarray, histories: list) -> np.ndarray:
        return np.broadcast_to(counts, (len(users), num_items + 1))

    return score


def position_in_lists(lists: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its recommended list; -1 where the list lacks it."""
    out = np.full(len(targets), -1, dtype=np.int64)
    for row, (items, target) in enumerate(zip(lists, targets)):
        found = np.flatnonzero(np.asarray(items) == target)
        if len(found):
            out[row] = found[0]
    return out


def ndcg_per_list(positions: np.ndarray, k: int) -> np.ndarray:
    """Each list's NDCG@k from `position_in_lists` (one relevant item per user)."""
    positions = np.asarray(positions)
    hit = (positions >= 0) & (positions < k)
    return np.where(hit, 1.0 / np.log2(np.maximum(positions, 0) + 2.0), 0.0)


def list_metrics(positions: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K, NDCG@K and MRR@K of served lists from `position_in_lists` (one relevant item per
    user, as in the leave-one-out protocols)."""
    found = np.asarray(positions) >= 0
    positions = np.where(found, positions, 0).astype(np.float64)
    out = {}
    for k in ks:
        hit = found & (positions < k)
        out[f"HR@{k}"] = float(hit.mean()) if len(positions) else 0.0
        out[f"NDCG@{k}"] = float(ndcg_per_list(np.where(found, positions, -1), k).mean()) if len(positions) else 0.0
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / (positions + 1.0), 0.0).mean()) if len(positions) else 0.0
    return out
