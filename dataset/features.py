"""Side features, encoded one way for training, the bundle builder and the server.

`FeatureEncoder` holds the vocabularies of the user features (gender, ML-1M age bucket,
occupation, zip prefix) and the genre list. Every user-feature matrix in movierec has the
columns of `USER_FEATURES`, in that order, with index 0 meaning "unknown" in each; movie side
features are the release-year bucket and the multi-hot genres. The encoder is fitted once,
when `movierec data` normalises a release, saved with the dataset and again in every bundle,
so a request's raw side features are encoded exactly as the training data were.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
import pandas as pd

from .readers import GENRES, age_bucket

USER_FEATURES = ("gender", "age", "occupation", "zip_prefix")
ZIP_PREFIX_LEN = 3
YEAR_BUCKETS = 20  # 5-year buckets from 1915; 0 = unknown year


def year_bucket(years) -> np.ndarray:
    years = np.asarray(years)
    return np.where(years > 0, np.clip((years - 1915) // 5 + 1, 1, YEAR_BUCKETS), 0).astype(np.int64)


@dataclass(frozen=True)
class FeatureEncoder:
    vocabularies: dict  # user feature -> sorted distinct values as strings; value i encodes as i + 1
    genres: tuple = GENRES

    @classmethod
    def fit(cls, users: pd.DataFrame) -> "FeatureEncoder":
        """Vocabularies over a users table with raw `USER_FEATURES` columns."""
        return cls({name: tuple(sorted(users[name].astype(str).unique())) for name in USER_FEATURES})

    @classmethod
    def from_dict(cls, saved: dict) -> "FeatureEncoder":
        """From `to_dict()`, or a dataset manifest's `vocabularies` (which has these keys too)."""
        return cls({name: tuple(saved[name]) for name in USER_FEATURES}, tuple(saved.get("genres", GENRES)))

    def to_dict(self) -> dict:
        return {**{name: list(values) for name, values in self.vocabularies.items()}, "genres": list(self.genres)}

    @staticmethod
    def column(name: str) -> int:
        """The column of user feature `name` in every user-feature matrix."""
        return USER_FEATURES.index(name)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Vocabulary size of each user feature, counting the 'unknown' index 0."""
        return tuple(len(self.vocabularies[name]) + 1 for name in USER_FEATURES)

    @cached_property
    def _codes(self) -> dict[str, dict[str, int]]:
        codes = {name: {value: i + 1 for i, value in enumerate(values)} for name, values in self.vocabularies.items()}
        codes["occupation_lower"] = {value.lower(): i + 1 for i, value in enumerate(self.vocabularies["occupation"])}
        return codes

    def encode(self, name: str, values: Iterable) -> np.ndarray:
        lookup = self._codes[name]
        return np.array([lookup.get(str(v), 0) for v in values], dtype=np.int64)

    def user_matrix(self, users: pd.DataFrame, num_users: int) -> np.ndarray:
        """(num_users + 1, 4) codes of a users table with `user` ids; row 0 (unknown) stays 0."""
        out = np.zeros((num_users + 1, len(USER_FEATURES)), dtype=np.int64)
        ids = users.user.to_numpy()
        for j, name in enumerate(USER_FEATURES):
            out[ids, j] = self.encode(name, users[name])
        return out

    def encode_request(self, gender: str, age: int, occupation: str, zip_code: str) -> np.ndarray:
        """The codes of a new user's raw side features: age in years, any zip code, occupation
        in any case; what the vocabularies do not know encodes as 0."""
        codes = self._codes
        return np.array([
            codes["gender"].get(gender, 0),
            codes["age"].get(str(age_bucket(age)), 0) if age > 0 else 0,
            codes["occupation_lower"].get(occupation.lower(), 0),
            codes["zip_prefix"].get(zip_code[:ZIP_PREFIX_LEN], 0) if zip_code else 0,
        ], dtype=np.int64)

    def genre_matrix(self, genres: Iterable[str]) -> np.ndarray:
        """(len(genres), G) multi-hot of 'A|B' genre strings."""
        genres = list(genres)
        column = {g: j for j, g in enumerate(self.genres)}
        out = np.zeros((len(genres), len(self.genres)), dtype=bool)
        for row, names in enumerate(genres):
            for name in filter(None, names.split("|")):
                out[row, column[name]] = True
        return out
