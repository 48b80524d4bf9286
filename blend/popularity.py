"""Popularity lists for the cold start: global, and per demographic group."""

from __future__ import annotations

import numpy as np

from movierec.dataset.features import FeatureEncoder
from movierec.dataset.sequences import Sequences

GENDER, AGE = FeatureEncoder.column("gender"), FeatureEncoder.column("age")


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

    def group(self, user_features: np.ndarray) -> int | None:
        """The row of these encoded side features' group, or None when it is unknown or empty."""
        gender_idx, age_idx = int(user_features[GENDER]), int(user_features[AGE])
        group = gender_idx * self.ages + age_idx
        if gender_idx <= 0 or age_idx <= 0 or group >= len(self.counts) or self.counts[group].max() <= 0:
            return None
        return group

    def ranked(self, user_features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(items, scores in [0, 1]) of the group, most popular first, or None (see `group`)."""
        group = self.group(user_features)
        if group is None:
            return None
        order = self.orders[group]
        order = order[self.counts[group, order] > 0]
        return order, (self.counts[group, order] / self.counts[group, order[0]]).astype(np.float32)

    def order(self, user_features: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """`pool` by popularity in the group, with scores in [0, 1], or None (see `group`)."""
        group = self.group(user_features)
        if group is None:
            return None
        counts = self.counts[group, pool]
        order = np.argsort(-counts, kind="stable")
        return pool[order], (counts[order] / max(counts.max(), 1.0)).astype(np.float32)
