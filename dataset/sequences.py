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


def chronological(ratings: pd.DataFrame, num_users: int) -> Sequences:
    """Each user's items ordered by timestamp; equal timestamps keep the file order (`row`)."""
    order = np.lexsort((ratings.row.to_numpy(), ratings.timestamp.to_numpy(), ratings.user.to_numpy()))
    users = ratings.user.to_numpy()[order]
    items = ratings.item.to_numpy()[order].astype(np.int64)
    counts = np.bincount(users, minlength=num_users + 1)
    return Sequences(np.concatenate([[0], np.cumsum(counts)]), items)


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
