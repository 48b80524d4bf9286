"""The catalogue a server answers from: the bundle's items (ids 1..bundle_items, the ids recall
and rank know) and the items added to the event store after the bundle was built (ids after
them, known to the blender and the filters only). Immutable: an update makes a new one, which
the pipeline swaps in whole."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from movierec.dataset.features import FeatureEncoder


@dataclass(frozen=True)
class ServedCatalogue:
    bundle_items: int
    raw_ids: np.ndarray        # (N + 1,) raw movie id of each id; 0 = padding
    titles: np.ndarray         # (N + 1,) object
    years: np.ndarray          # (N + 1,) int, 0 = unknown
    genres: np.ndarray         # (N + 1, G) bool
    item_of_raw: dict          # raw movie id -> id
    added: np.ndarray          # ids past bundle_items, newest first (release year, then arrival)

    @property
    def size(self) -> int:
        return len(self.raw_ids) - 1

    @classmethod
    def of_bundle(cls, items: pd.DataFrame, encoder: FeatureEncoder) -> "ServedCatalogue":
        items = items.sort_values("item")
        num = len(items)
        genres = np.zeros((num + 1, len(encoder.genres)), dtype=bool)
        genres[items.item.to_numpy()] = encoder.genre_matrix(items.genres)
        return cls(num, np.concatenate([[0], items.raw_id.to_numpy()]).astype(np.int64),
                   np.concatenate([[""], items.title.to_numpy()]).astype(object),
                   np.concatenate([[0], items.year.to_numpy()]).astype(np.int64), genres,
                   dict(zip(items.raw_id.to_numpy().tolist(), items.item.to_numpy().tolist())),
                   np.zeros(0, np.int64))

    def with_items(self, rows: list[tuple], encoder: FeatureEncoder) -> "ServedCatalogue":
        """Items added or changed in the store: rows of (raw_id, title, year, genres "A|B", ...),
        in the order they changed. A bundle item keeps its id; a new one gets the next."""
        if not rows:
            return self
        item_of_raw = dict(self.item_of_raw)
        new = [raw for raw, *_ in rows if raw not in item_of_raw]
        new = list(dict.fromkeys(new))
        for offset, raw in enumerate(new, start=len(self.raw_ids)):
            item_of_raw[raw] = offset
        grow = len(new)
        raw_ids = np.concatenate([self.raw_ids, np.array(new, dtype=np.int64)])
        titles = np.concatenate([self.titles, np.full(grow, "", dtype=object)])
        years = np.concatenate([self.years, np.zeros(grow, np.int64)])
        genres = np.concatenate([self.genres, np.zeros((grow, self.genres.shape[1]), bool)])
        for raw, title, year, names, *_ in rows:
            item = item_of_raw[raw]
            titles[item], years[item] = title, year
            genres[item] = encoder.genre_matrix([names])[0]
        added = np.concatenate([np.arange(len(self.raw_ids), len(raw_ids)), self.added])  # latest arrivals first
        added = added[np.argsort(-years[added], kind="stable")]
        return replace(self, raw_ids=raw_ids, titles=titles, years=years, genres=genres, item_of_raw=item_of_raw,
                       added=added.astype(np.int64))
