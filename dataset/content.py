"""Content vectors of movies: what a movie is about, from its title and plot (TF-IDF reduced by
SVD), its genres and its release year, for movies no one has rated yet.

`ContentEncoder.fit` learns the vocabulary, the IDF weights and the SVD basis with
scikit-learn (offline, `movierec train content`); `encode` applies them in numpy alone, the same
arithmetic as scikit-learn's `TfidfVectorizer(sublinear_tf=True)` followed by
`TruncatedSVD.transform`, so a server can encode a movie that arrives through `UpsertItems`.

A vector is [text, genres, year] with each part L2-normalised and weighted, the whole L2-normalised:
- text: the SVD of the title's and plot's TF-IDF row;
- genres: the multi-hot genres;
- year: the release year softly one-hot over decades (a Gaussian of 8 years around each
  decade's centre), so that movies of near years are alike; all zero when unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .readers import GENRES

TOKEN = re.compile(r"(?u)\b\w\w+\b")       # scikit-learn's default token pattern
TITLE_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
DECADES = np.arange(1915, 2030, 10, dtype=np.float32)
YEAR_WIDTH = 8.0
WEIGHTS = {"text": 1.0, "genres": 0.6, "year": 0.4}


def document(title: str, plot: str) -> str:
    return f"{TITLE_YEAR.sub('', title)} {plot}".strip()


def _normalised(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def year_features(years: Iterable[int]) -> np.ndarray:
    years = np.asarray(list(years), dtype=np.float32)
    out = np.exp(-0.5 * ((years[:, None] - DECADES[None]) / YEAR_WIDTH) ** 2).astype(np.float32)
    out[years <= 0] = 0.0
    return out


@dataclass
class ContentEncoder:
    terms: list[str]             # the vocabulary; a term's column is its position
    idf: np.ndarray              # (V,) float32
    components: np.ndarray       # (D, V) float32: the SVD basis
    genres: tuple = GENRES

    def __post_init__(self) -> None:
        self.column = {term: j for j, term in enumerate(self.terms)}

    @property
    def dim(self) -> int:
        return self.components.shape[0] + len(self.genres) + len(DECADES)

    @classmethod
    def fit(cls, documents: Sequence[str], dim: int = 64, seed: int = 0, min_df: int = 2,
            max_terms: int = 30_000) -> "ContentEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=min_df, max_features=max_terms, stop_words="english",
                                     dtype=np.float32)
        tfidf = vectorizer.fit_transform(documents)
        dim = max(1, min(dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
        svd = TruncatedSVD(dim, random_state=seed).fit(tfidf)
        terms = vectorizer.get_feature_names_out().tolist()
        return cls(terms, vectorizer.idf_.astype(np.float32), svd.components_.astype(np.float32))

    def text(self, documents: Sequence[str]) -> np.ndarray:
        """(N, D) SVD projections of the documents' TF-IDF rows, L2-normalised."""
        out = np.zeros((len(documents), self.components.shape[0]), np.float32)
        for row, text in enumerate(documents):
            counts: dict[int, int] = {}
            for token in TOKEN.findall(text.lower()):
                j = self.column.get(token)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))) * self.idf[columns]
            out[row] = self.components[:, columns] @ (weights / np.linalg.norm(weights))
        return _normalised(out)

    def encode(self, titles: Sequence[str], plots: Sequence[str], genres: Sequence[str],
               years: Sequence[int]) -> np.ndarray:
        """(N, dim) content vectors; `genres` as 'A|B' strings."""
        column = {g: j for j, g in enumerate(self.genres)}
        multi_hot = np.zeros((len(genres), len(self.genres)), np.float32)
        for row, names in enumerate(genres):
            for name in filter(None, names.split("|")):
                multi_hot[row, column[name]] = 1.0
        parts = [WEIGHTS["text"] * self.text([document(t, p) for t, p in zip(titles, plots)]),
                 WEIGHTS["genres"] * _normalised(multi_hot), WEIGHTS["year"] * _normalised(year_features(years))]
        return _normalised(np.concatenate(parts, axis=1))

    def arrays(self) -> dict:
        return {"terms": np.array(self.terms, dtype=str), "idf": self.idf, "components": self.components,
                "genres": np.array(self.genres, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "ContentEncoder":
        return cls(arrays["terms"].tolist(), arrays["idf"], arrays["components"], tuple(arrays["genres"].tolist()))
