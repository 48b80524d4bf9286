"""Popularity lists for the cold start: global, and per demographic group."""

from __future__ import annotations

import numpy as np

from movierec.dataset.sequences import Sequences

GENDER, AGE = 0, 1  # columns of the user feature table


def popularity_counts(seen: Sequences, num_items: int) -> np.ndarray:
    counts = np.bincount(seen.items, minlength=num_items + 1).astype(np.float64)
    counts[0] = 0
    return counts


class DemographicPopularity:
    """Items by popularity among users of the same gender and age bucket."""

    def __init__(self, seen: Sequences, user_features: np.ndarray, num_items: int):
        genders = int(user_features[:, GENDER].max()) + 1
        ages = int(user_features[:, AGE].max()) + 1
        self.ages = ages
        group = user_features[:, GENDER] * ages + user_features[:, AGE]
        owners = np.repeat(np.arange(seen.num_users), seen.lengths())
        counts = np.zeros((genders * ages, num_items + 1))
        np.add.at(counts, (group[owners], seen.items), 1.0)
        counts[:, 0] = 0
        self.counts = counts
        self.orders = np.argsort(-counts, axis=1, kind="stable")

    def ranked(self, gender_idx: int, age_idx: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(items, scores in [0, 1]) of the group, or None when it is unknown or empty."""
        group = gender_idx * self.ages + age_idx
        if gender_idx <= 0 or age_idx <= 0 or group >= len(self.counts) or self.counts[group].max() <= 0:
            return None
        order = self.orders[group]
        order = order[self.counts[group, order] > 0]
        return order, (self.counts[group, order] / self.counts[group, order[0]]).astype(np.float32)
