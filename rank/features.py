"""The features a learned ranker sees for each candidate of a request, computed one way for
training (`models.ranker.data`) and serving (`rank.learned`), in numpy.

Per candidate, by group (a ranker run names the groups it was trained with; leaving one out
is an ablation):

- `recall`: each channel's score and rank (0 where it did not propose or score the item),
  whether it proposed it, the candidate's position in the merged list, how many channels
  proposed it;
- `popularity`: the item's interaction count, its count in the last 30 days of the bundle,
  its age (days since its first interaction), all log1p;
- `side`: the movie's year and genres, its poster vector projected to a few dimensions with a
  presence flag, and the user's side-feature codes (gender, age, occupation, zip prefix;
  categorical);
- `history`: the user's history length, and the overlap of the candidate's genres with the
  genres of the user's recent items;
- `ncf`: the NCF model's logit (its GMF/MLP user and item embeddings with the side features),
  when the ranker run was trained with it.

The item-only columns are an `ItemTable` made when the bundle is built, from the bundle's own
ratings, so popularity and age are those the server sees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from movierec.dataset.features import USER_FEATURES, FeatureEncoder
from movierec.dataset.sequences import Histories, item_counts
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged
from movierec.tables import grown

GROUPS = ("recall", "popularity", "side", "history", "ncf")
RECENT_DAYS = 30
PROFILE_ITEMS = 20   # the recent items whose genres make the user's genre profile
SECONDS_PER_DAY = 86_400


@dataclass
class ItemTable:
    """Item-only columns, row 0 = padding."""

    popularity: np.ndarray   # (I+1,) log1p(interactions)
    recent: np.ndarray       # (I+1,) log1p(interactions in the bundle's last RECENT_DAYS days)
    age: np.ndarray          # (I+1,) log1p(days since the item's first interaction; 0 if none)
    year: np.ndarray         # (I+1,) (release year - 1990) / 10, 0 if unknown
    genres: np.ndarray       # (I+1, G) 0/1
    posters: np.ndarray      # (I+1, P) poster vector projected by the run's basis, 0 without one
    has_poster: np.ndarray   # (I+1,) 0/1

    @classmethod
    def build(cls, catalogue: pd.DataFrame, histories: Histories, encoder: FeatureEncoder,
              posters: np.ndarray | None, has_poster: np.ndarray | None) -> "ItemTable":
        """From a bundle's catalogue and histories (with timestamps); `posters` (I+1, P) already
        projected, or None."""
        num_items = len(catalogue)
        items, stamps = histories.sequences.items, histories.stamps
        newest = int(stamps.max()) if len(stamps) else 0
        recent = stamps >= newest - RECENT_DAYS * SECONDS_PER_DAY
        first_seen = np.full(num_items + 1, newest, dtype=np.int64)
        np.minimum.at(first_seen, items, stamps)
        year = np.zeros(num_items + 1, dtype=np.float32)
        known = catalogue.year.to_numpy() > 0
        year[catalogue.item.to_numpy()[known]] = (catalogue.year.to_numpy()[known] - 1990) / 10
        genres = np.zeros((num_items + 1, len(encoder.genres)), dtype=np.float32)
        genres[catalogue.item.to_numpy()] = encoder.genre_matrix(catalogue.genres)
        if posters is None:
            posters, has_poster = np.zeros((num_items + 1, 0), np.float32), np.zeros(num_items + 1, np.float32)
        return cls(np.log1p(item_counts(items, num_items)).astype(np.float32),
                   np.log1p(item_counts(items[recent], num_items)).astype(np.float32),
                   np.log1p((newest - first_seen) / SECONDS_PER_DAY).astype(np.float32), year, genres,
                   posters.astype(np.float32), has_poster.astype(np.float32))

    def grown(self, added) -> "ItemTable":
        """With rows for movies added while serving (`recall.component.AddedItems`): no
        interactions, no poster, their year and genres."""
        count = len(added)
        year = np.where(added.years > 0, (added.years - 1990) / 10, 0).astype(np.float32)
        return ItemTable(grown(self.popularity, count), grown(self.recent, count), grown(self.age, count),
                         grown(self.year, year), grown(self.genres, added.genres), grown(self.posters, count),
                         grown(self.has_poster, count))

    def arrays(self) -> dict:
        return {f"item_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "ItemTable":
        return cls(**{k.removeprefix("item_"): v for k, v in arrays.items() if k.startswith("item_")})


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns a ranker reads: the recall channels (in the bundle's order) and the groups."""

    channels: tuple
    groups: tuple
    genres: int
    poster_dims: int

    def names(self) -> list[str]:
        names = []
        if "recall" in self.groups:
            for channel in self.channels:
                names += [f"{channel}_score", f"{channel}_inv_rank", f"{channel}_proposed"]
            names += ["merged_inv_position", "channels_proposing"]
        if "popularity" in self.groups:
            names += ["popularity", "recent_popularity", "item_age"]
        if "side" in self.groups:
            names += ["year", *(f"genre_{j}" for j in range(self.genres)),
                      *(f"poster_{j}" for j in range(self.poster_dims)), "has_poster", *USER_FEATURES]
        if "history" in self.groups:
            names += ["history_length", "genre_overlap"]
        if "ncf" in self.groups:
            names += ["ncf_logit"]
        return names

    def categorical(self) -> list[int]:
        """Columns holding codes of unordered values (gender, occupation); age buckets and zip
        prefixes are ordered, so their codes are kept as numbers."""
        names = self.names()
        return [names.index(name) for name in ("gender", "occupation") if name in names]

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "groups": list(self.groups), "genres": self.genres,
                "poster_dims": self.poster_dims}

    @classmethod
    def from_dict(cls, saved: dict) -> "FeatureSpec":
        return cls(tuple(saved["channels"]), tuple(saved["groups"]), int(saved["genres"]), int(saved["poster_dims"]))


class RankFeatures:
    """`matrix(context, merged)`: the (N, F) float32 features of N candidates, in `spec.names()`
    order. `ncf` is the NCF scorer behind the `ncf` group.

    The item-only columns of each group are gathered from one precomputed block per group, and
    every column is written in place into the output: one request's features are a handful of
    numpy operations whatever the width."""

    def __init__(self, spec: FeatureSpec, table: ItemTable, ncf=None):
        self.spec, self.table, self.ncf = spec, table, ncf
        names = spec.names()
        self.width = len(names)
        self.item_blocks = []   # (first column, (I+1, k) block)
        if "popularity" in spec.groups:
            self.item_blocks.append((names.index("popularity"),
                                     np.stack([table.popularity, table.recent, table.age], axis=1)))
        if "side" in spec.groups:
            self.item_blocks.append((names.index("year"), np.concatenate(
                [table.year[:, None], table.genres, table.posters, table.has_poster[:, None]], axis=1)))
            self.user_column = names.index(USER_FEATURES[0])
        self.item_blocks = [(first, np.ascontiguousarray(block, dtype=np.float32)) for first, block in self.item_blocks]
        self.recall_column = 0
        self.history_column = names.index("history_length") if "history" in spec.groups else -1
        self._channel_columns: dict = {}

    def channel_columns(self, merged: Merged) -> np.ndarray:
        """The spec's channels among the merged list's columns (a bundle may order them otherwise)."""
        found = self._channel_columns.get(merged.channels)
        if found is None:
            found = self._channel_columns[merged.channels] = np.array(
                [merged.channels.index(c) if c in merged.channels else -1 for c in self.spec.channels])
        return found

    def matrix(self, context: RequestContext, merged: Merged) -> np.ndarray:
        t, groups, items = self.table, self.spec.groups, merged.items
        n = len(items)
        out = np.empty((n, self.width), np.float32)
        if "recall" in groups:
            columns = self.channel_columns(merged)
            present = columns >= 0
            width = len(columns)
            scores = np.zeros((n, width), np.float32)
            ranks = np.full((n, width), -1, np.int32)
            scores[:, present] = merged.scores[:, columns[present]]
            scores[np.isnan(scores)] = 0.0
            ranks[:, present] = merged.ranks[:, columns[present]]
            proposed = ranks >= 0
            per_channel = out[:, :3 * width].reshape(n, width, 3)
            per_channel[:, :, 0] = scores
            per_channel[:, :, 1] = np.where(proposed, 1.0 / (1.0 + np.maximum(ranks, 0)), 0.0)
            per_channel[:, :, 2] = proposed
            out[:, 3 * width] = np.where(merged.primary >= 0, 1.0 / (1.0 + np.arange(n)), 0.0)
            out[:, 3 * width + 1] = proposed.sum(axis=1)
        for first, block in self.item_blocks:
            out[:, first:first + block.shape[1]] = block[items]
        if "side" in groups:
            out[:, self.user_column:self.user_column + len(USER_FEATURES)] = context.user_features
        if "history" in groups:
            sequence = context.sequence
            recent = sequence[-PROFILE_ITEMS:]
            profile = t.genres[recent].sum(axis=0) / max(len(recent), 1)
            out[:, self.history_column] = np.log1p(len(sequence))
            out[:, self.history_column + 1] = t.genres[items] @ profile
        if "ncf" in groups:
            out[:, -1] = self.ncf.score(context.user, context.user_features, items)
        return out
