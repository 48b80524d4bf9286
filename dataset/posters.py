"""Poster vectors: one float32 vector per movie, keyed by raw MovieLens movie id.

File format (`.npz`, no pickled objects, read with `allow_pickle=False`):

    movie_id  int64 (N,)    raw MovieLens ids, unique, ascending
    vectors   float32 (N, D) one row per movie id, all finite

The dimension D is whatever produced them: 2048 for `movierec posters embed` (ResNet50 minus
its classifier, `models/posters.py`), 1280 for the pretrained EfficientNet-Lite0 vectors of
the ML-1M posters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movierec.errors import MovieRecError
from movierec.files import save_npz


class PosterError(MovieRecError):
    """Poster vectors or images that cannot be used."""


@dataclass
class PosterVectors:
    movie_id: np.ndarray
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def validate(self) -> None:
        if self.vectors.ndim != 2 or self.movie_id.ndim != 1 or len(self.movie_id) != len(self.vectors):
            raise PosterError(f"expected movie_id (N,) and vectors (N, D), got {self.movie_id.shape} "
                              f"and {self.vectors.shape}")
        if len(self.movie_id) == 0 or self.dim == 0:
            raise PosterError("no poster vectors")
        if len(np.unique(self.movie_id)) != len(self.movie_id):
            raise PosterError("movie ids are not unique")
        bad = ~np.isfinite(self.vectors).all(axis=1)
        if bad.any():
            raise PosterError(f"{int(bad.sum())} vector(s) hold NaN or inf, e.g. movie {int(self.movie_id[bad][0])}")

    def restricted_to(self, known_movie_ids: np.ndarray) -> tuple["PosterVectors", np.ndarray]:
        """The vectors of known movies, and the ids that are not known (for the caller to report)."""
        known = np.isin(self.movie_id, known_movie_ids)
        if not known.any():
            raise PosterError("none of the poster movie ids is in the dataset; wrong file or dataset?")
        return PosterVectors(self.movie_id[known], self.vectors[known]), self.movie_id[~known]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        order = np.argsort(self.movie_id)
        return save_npz(path, {"movie_id": self.movie_id[order].astype(np.int64),
                               "vectors": self.vectors[order].astype(np.float32)})

    def aligned(self, item_raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(item_raw_ids), D) vectors in catalogue order and a presence flag per row."""
        index = {int(m): row for row, m in enumerate(self.movie_id)}
        rows = np.array([index.get(int(m), -1) for m in item_raw_ids])
        present = rows >= 0
        out = np.zeros((len(item_raw_ids), self.dim), dtype=np.float32)
        out[present] = self.vectors[rows[present]]
        return out, present


def load_posters(path: str | Path) -> PosterVectors:
    path = Path(path)
    if not path.is_file():
        raise PosterError(f"poster vectors not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not {"movie_id", "vectors"} <= set(data.files):
                raise PosterError(f"{path}: needs arrays 'movie_id' and 'vectors', has {data.files}")
            posters = PosterVectors(data["movie_id"].astype(np.int64), data["vectors"].astype(np.float32))
    except (OSError, ValueError) as exc:
        raise PosterError(f"{path}: not a readable .npz of poster vectors ({exc})") from exc
    posters.validate()
    return posters


def catalogue_posters(posters: PosterVectors | None, item_raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(num_items + 1, P) poster vectors in contiguous id order, centred and L2-normalised, and
    a presence flag per row (float32; row 0 = padding). `item_raw_ids` are the catalogue's raw
    ids in contiguous id order from item 1. Raw CNN features share a large common component;
    centring spreads them out. Without posters: one zero column and no flags."""
    num_rows = len(item_raw_ids) + 1
    if posters is None:
        return np.zeros((num_rows, 1), dtype=np.float32), np.zeros(num_rows, dtype=np.float32)
    raw, present = posters.aligned(item_raw_ids)
    vectors = np.zeros((num_rows, raw.shape[1]), dtype=np.float32)
    has_poster = np.zeros(num_rows, dtype=np.float32)
    if present.any():
        centred = raw[present] - raw[present].mean(axis=0)
        centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-8)
        vectors[1:][present] = centred
        has_poster[1:][present] = 1.0
    return vectors, has_poster
