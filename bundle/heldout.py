"""What a held-out bundle holds out: each user's target under the split its manifest records,
and the histories (with their timestamps) the builder built it from.

- `hold_out_last N`: each user's history without the last N items; the target is the first of
  them (N = 1: the test item of the runs' leave-last-out split, N = 2: the validation item);
- `hold_out_after DATE`: the ratings before the cut; the target is each user's first item
  after it (before `targets_before`, when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movierec.dataset.sequences import Histories
from movierec.dataset.store import Dataset, cut_time
from movierec.errors import ConfigError


def split_of(manifest: dict) -> tuple[int, str]:
    """(hold_out_last, hold_out_after) of a bundle's manifest."""
    split = manifest.get("split", {})
    return int(split.get("hold_out_last", 0) or 0), split.get("hold_out_after", "") or ""


def bundle_histories(dataset: Dataset, hold_out_last: int) -> Histories:
    """The histories a bundle of `dataset` (already cut by `Dataset.before`) holds, timestamps kept."""
    histories = Histories.from_ratings(dataset.ratings, dataset.num_users)
    return histories.without_last(hold_out_last) if hold_out_last else histories


@dataclass
class HeldOut:
    users: np.ndarray      # contiguous user ids with a target
    targets: np.ndarray    # contiguous item id of each
    history: np.ndarray    # length of each user's history in the bundle


def held_out(bundle, full: Histories, targets_before: str = "") -> HeldOut:
    """Each user's target under the split the bundle was built with (under a time cut, only
    targets before `targets_before`, when given)."""
    last, after = split_of(bundle.manifest)
    lengths = full.sequences.lengths()
    users, targets = [], []
    if last:
        for user in np.flatnonzero(lengths >= last):
            users.append(user)
            targets.append(full.of(user)[lengths[user] - last])
    elif after:
        cut = cut_time(after)
        end_of_period = cut_time(targets_before) if targets_before else np.inf
        for user in np.flatnonzero(lengths > 0):
            start, end = full.sequences.indptr[user], full.sequences.indptr[user + 1]
            later = np.flatnonzero(full.stamps[start:end] >= cut)
            if len(later) and full.stamps[start + later[0]] < end_of_period:
                users.append(user)
                targets.append(full.sequences.items[start + later[0]])
    else:
        raise ConfigError(f"bundle {bundle.version} holds every rating, so nothing is held out to evaluate on; "
                          "build one with --hold-out-last 1 or --hold-out-after DATE")
    users = np.asarray(users, dtype=np.int64)
    history = bundle.histories.sequences.lengths()[users]
    return HeldOut(users, np.asarray(targets, dtype=np.int64), history)


