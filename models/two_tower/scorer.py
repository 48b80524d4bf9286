"""The two-tower model in numpy, the serving form (no Paddle import): the movie vectors are
computed once at export; a request computes one user vector. The movie tower's weights come
along, so a movie that arrives after the export gets its vector from genres, year and content."""

from __future__ import annotations

import numpy as np

from movierec.dataset.features import year_bucket
from movierec.files import SavedArrays


def _l2(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class TwoTowerScorer(SavedArrays):
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = a = arrays
        self.history = int(a["history"])
        self.item_vectors = a["item_vectors"]      # (I+1, D), L2-normalised; row 0 zero
        self.side_tables = [a[f"user_side_{j}"] for j in range(int(a["num_user_side"]))]

    def user_vector(self, user: int, user_features: np.ndarray, sequence: np.ndarray) -> np.ndarray:
        """The user tower: `user` 0 for one the model does not know; `sequence` oldest first."""
        a = self.arrays
        recent = np.asarray(sequence, dtype=np.int64)[-self.history:]
        recent = recent[recent > 0]
        history = a["item_ids"][recent].mean(axis=0) if len(recent) else np.zeros(a["item_ids"].shape[1], np.float32)
        side = [table[int(code)] for table, code in zip(self.side_tables, user_features)]
        x = np.concatenate([a["user_ids"][user], *side, history])
        hidden = np.maximum(x @ a["user_w1"] + a["user_b1"], 0)
        return _l2(hidden @ a["user_w2"] + a["user_b2"]).astype(np.float32)

    def grow(self, genres: np.ndarray, years: np.ndarray, content: np.ndarray | None) -> np.ndarray:
        """Append movies the model has no id of (`movie_vectors`); returns their vectors."""
        if content is None and "content_w" in self.arrays:
            content = np.zeros((len(genres), self.arrays["content_w"].shape[0]), np.float32)
        vectors = self.movie_vectors(genres, years, content)
        a = self.arrays
        a["item_vectors"] = self.item_vectors = np.concatenate([self.item_vectors, vectors])
        a["item_ids"] = np.concatenate([a["item_ids"], np.zeros((len(genres), a["item_ids"].shape[1]), np.float32)])
        return vectors

    def movie_vectors(self, genres: np.ndarray, years: np.ndarray, content: np.ndarray | None) -> np.ndarray:
        """The movie tower for movies it has no id embedding of: (N, D) from the multi-hot
        `genres`, release `years` and `content` vectors (when the model reads them)."""
        a = self.arrays
        parts = [np.zeros((len(genres), a["item_ids"].shape[1]), np.float32),
                 genres.astype(np.float32) @ a["genre_w"] + a["genre_b"], a["year_table"][year_bucket(years)]]
        if "content_w" in a:
            parts.append(content @ a["content_w"] + a["content_b"])
        hidden = np.maximum(np.concatenate(parts, axis=1) @ a["item_w1"] + a["item_b1"], 0)
        return _l2(hidden @ a["item_w2"] + a["item_b2"]).astype(np.float32)
