"""The popular and new lists the blender's slots draw from, made when a bundle is built."""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.dataset.sequences import item_counts

SECONDS_PER_DAY = 86_400
SLOT_POOL = 400  # the popular and new slots draw from this many of the most popular / newest items (README: Served quality)


def popular_items(items: np.ndarray, stamps: np.ndarray, num_items: int, half_life_days: float) -> np.ndarray:
    """Item ids by interaction count, optionally decayed by age relative to the newest interaction."""
    weights = None
    if half_life_days > 0 and len(stamps):
        age_days = (stamps.max() - stamps) / SECONDS_PER_DAY
        weights = 0.5 ** (age_days / half_life_days)
    counts = item_counts(items, num_items, weights)
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] > 0].astype(np.int64)


def new_items(catalogue: pd.DataFrame, items: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Item ids by release year, newest first, then by first rating time, latest first.
    `catalogue` is an items table with `item` and `year` columns."""
    num_items = len(catalogue)
    first_seen = np.full(num_items + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, items, stamps)
    first_seen[first_seen == np.iinfo(np.int64).max] = 0
    year = np.zeros(num_items + 1, dtype=np.int64)
    year[catalogue.item.to_numpy()] = catalogue.year.to_numpy()
    candidates = np.arange(1, num_items + 1)
    order = np.lexsort((-first_seen[candidates], -year[candidates]))
    return candidates[order].astype(np.int64)
