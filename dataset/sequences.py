"""Per-user chronological sequences and the leave-last-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Sequences:
    """Item sequences of users 0..num_users in CSR form: user u owns items[indptr[u]:indptr[u+1]]."""

    indptr: np.ndarray
    items: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def from_lists(cls, lists: list) -> "Sequences":
        lengths = np.array([len(s) for s in lists], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in lists]) if len(lists) else np.zeros(0, np.int64)
        return cls(indptr, items.astype(np.int64))


def time_order(ratings: pd.DataFrame) -> np.ndarray:
    """Row order by user, then timestamp; equal timestamps keep the file order (`row`)."""
    return np.lexsort((ratings.row.to_numpy(), ratings.timestamp.to_numpy(), ratings.user.to_numpy()))


def _indptr(users_in_order: np.ndarray, num_users: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(users_in_order, minlength=num_users + 1))])


def chronological(ratings: pd.DataFrame, num_users: int) -> Sequences:
    """Each user's items ordered by timestamp; equal timestamps keep the file order (`row`)."""
    order = time_order(ratings)
    return Sequences(_indptr(ratings.user.to_numpy()[order], num_users),
                     ratings.item.to_numpy()[order].astype(np.int64))


@dataclass
class Histories:
    """Each user's interactions in time order: the items, with their ratings and (offline)
    timestamps aligned to `sequences.items`."""

    sequences: Sequences
    ratings: np.ndarray              # int8
    stamps: np.ndarray | None = None  # int64 seconds; not kept in bundles

    @classmethod
    def from_ratings(cls, ratings: pd.DataFrame, num_users: int) -> "Histories":
        order = time_order(ratings)
        sequences = Sequences(_indptr(ratings.user.to_numpy()[order], num_users),
                              ratings.item.to_numpy()[order].astype(np.int64))
        return cls(sequences, ratings.rating.to_numpy()[order].astype(np.int8), ratings.timestamp.to_numpy()[order])

    def of(self, user: int) -> np.ndarray:
        return self.sequences.of(user)

    def ratings_of(self, user: int) -> np.ndarray:
        return self.ratings[self.sequences.indptr[user]:self.sequences.indptr[user + 1]]

    def without_last(self, count: int = 1) -> "Histories":
        """Every user's history but its last `count` interactions (for evaluating on them)."""
        lengths = self.sequences.lengths()
        kept = np.maximum(lengths - count, 0)
        position = np.arange(len(self.sequences.items)) - np.repeat(self.sequences.indptr[:-1], lengths)
        keep = position < np.repeat(kept, lengths)
        indptr = np.concatenate([[0], np.cumsum(kept)])
        return Histories(Sequences(indptr, self.sequences.items[keep]), self.ratings[keep],
                         None if self.stamps is None else self.stamps[keep])


def item_counts(items: np.ndarray, num_items: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(num_items + 1,) float64 interaction counts (or summed weights) per item; padding 0 counts 0."""
    counts = np.bincount(items, weights=weights, minlength=num_items + 1).astype(np.float64)
    counts[0] = 0.0
    return counts


@dataclass
class LeaveLastOut:
    """train = all but the last two items, valid = second to last, test = last.

    Users with fewer than 3 items keep everything in train and have target 0
    (they are left out of evaluation), as in the SASRec paper.
    """

    train: Sequences
    valid: np.ndarray  # (num_users + 1,) target item per user, 0 = none
    test: np.ndarray

    def history(self, stage: str) -> Sequences:
        """The sequence a model sees before predicting `stage`'s target."""
        if stage == "valid":
            return self.train
        if stage == "test":
            has_valid = self.valid > 0
            items = np.insert(self.train.items, self.train.indptr[1:][has_valid], self.valid[has_valid])
            lengths = self.train.lengths() + has_valid
            return Sequences(np.concatenate([[0], np.cumsum(lengths)]), items)
        raise ValueError(f"unknown stage {stage!r}")

    def targets(self, stage: str) -> np.ndarray:
        return {"valid": self.valid, "test": self.test}[stage]


def leave_last_out(sequences: Sequences) -> LeaveLastOut:
    lengths = sequences.lengths()
    has_targets = lengths >= 3
    ends = sequences.indptr[1:]
    valid = np.where(has_targets, sequences.items[np.maximum(ends - 2, 0)], 0)
    test = np.where(has_targets, sequences.items[np.maximum(ends - 1, 0)], 0)
    train_len = np.where(has_targets, lengths - 2, lengths)
    keep = np.zeros(len(sequences.items), dtype=bool)
    for start, length in zip(sequences.indptr[:-1], train_len):
        keep[start:start + length] = True
    train = Sequences(np.concatenate([[0], np.cumsum(train_len)]), sequences.items[keep])
    return LeaveLastOut(train=train, valid=valid.astype(np.int64), test=test.astype(np.int64))
