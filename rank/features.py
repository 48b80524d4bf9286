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
  when the ranker run was trained with it;
- `list`: each channel's softmax over the list (the share of exp(score) among the candidates it
  scored; 0 where it did not score the item), and with `ncf` the softmax of the logits: how
  sure each model is of a candidate against the others of the same request, which a tree
  cannot read from raw scores whose scale differs between users.

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

GROUPS = ("recall", "popularity", "side", "history", "ncf", "list")
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
        if "list" in self.groups:
            names += [f"{channel}_share" for channel in self.channels] + (["ncf_logit_share"] if "ncf" in self.groups else [])
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
        self.genre_columns = None   # where `matrix` holds the candidates' genres, with the `side` group
        if "popularity" in spec.groups:
            self.item_blocks.append((names.index("popularity"),
                                     np.stack([table.popularity, table.recent, table.age], axis=1)))
        if "side" in spec.groups:
            self.item_blocks.append((names.index("year"), np.concatenate(
                [table.year[:, None], table.genres, table.posters, table.has_poster[:, None]], axis=1)))
            self.user_column = names.index(USER_FEATURES[0])
            first_genre = names.index("year") + 1
            self.genre_columns = slice(first_genre, first_genre + spec.genres)
        self.item_blocks = [(first, np.ascontiguousarray(block, dtype=np.float32)) for first, block in self.item_blocks]
        self.history_column = names.index("history_length") if "history" in spec.groups else -1
        # the columns that depend on the request alone (the same for all its candidates), and
        # those that vary between its candidates (recall signals, genre overlap, the NCF logit)
        request = [*(range(self.user_column, self.user_column + len(USER_FEATURES)) if "side" in spec.groups else ()),
                   *((self.history_column,) if "history" in spec.groups else ())]
        self.request_columns = np.array(request, dtype=np.int64)
        fixed = set(request).union(*(range(first, first + block.shape[1]) for first, block in self.item_blocks))
        self.varying_columns = np.array([j for j in range(self.width) if j not in fixed], dtype=np.int64)
        # where `matrix` and `varying` write the genre overlap, the NCF logit and the first share
        targets = {"overlap": "genre_overlap", "ncf": "ncf_logit", "shares": f"{spec.channels[0]}_share" if spec.channels else ""}
        self.matrix_at = {key: names.index(name) for key, name in targets.items() if name in names}
        self.varying_at = {key: int(np.searchsorted(self.varying_columns, column)) for key, column in self.matrix_at.items()}
        self._channel_columns: dict = {}
        self._inverses = np.zeros(0, np.float32)

    def _inverse(self, size: int) -> np.ndarray:
        """At least `size` values of 1 / (1 + rank) indexed by rank + 1, with 0 for the rank -1
        (not proposed); kept between requests."""
        if len(self._inverses) < size:
            self._inverses = np.r_[0.0, 1.0 / np.arange(1, 2 * size)].astype(np.float32)
        return self._inverses

    def channel_columns(self, merged: Merged) -> tuple[np.ndarray, bool]:
        """The spec's channels among the merged list's columns (a bundle may order them
        otherwise), and whether they are the merged list's own columns in its own order."""
        found = self._channel_columns.get(merged.channels)
        if found is None:
            columns = np.array([merged.channels.index(c) if c in merged.channels else -1 for c in self.spec.channels])
            found = self._channel_columns[merged.channels] = (
                columns, np.array_equal(columns, np.arange(len(merged.channels))))
        return found

    def matrix(self, context: RequestContext, merged: Merged) -> np.ndarray:
        items = merged.items
        out = np.empty((len(items), self.width), np.float32)
        for first, block in self.item_blocks:
            out[:, first:first + block.shape[1]] = block[items]
        self._write_varying(out, context, merged, self.matrix_at, self.genre_columns)
        out[:, self.request_columns] = self.request_values(context)
        return out

    def varying(self, context: RequestContext, merged: Merged) -> np.ndarray:
        """The columns of `matrix` that vary between a request's candidates, `varying_columns`."""
        out = np.empty((len(merged.items), len(self.varying_columns)), np.float32)
        self._write_varying(out, context, merged, self.varying_at)
        return out

    def request_values(self, context: RequestContext) -> np.ndarray:
        """The columns of `matrix` that depend on the request alone, `request_columns`."""
        values = []
        if "side" in self.spec.groups:
            values.append(context.user_features)
        if "history" in self.spec.groups:
            values.append([np.log1p(len(context.sequence))])
        return np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)

    def _write_varying(self, out: np.ndarray, context: RequestContext, merged: Merged, at: dict,
                       genre_columns: slice | None = None) -> None:
        """The recall signals into `out`'s first columns, the genre overlap, the NCF logit and
        the shares into the columns `at` gives; the candidates' genres are read from `out`'s
        `genre_columns` where they are written already, else gathered."""
        groups, items = self.spec.groups, merged.items
        n = len(items)
        if "recall" in groups or "list" in groups:
            columns, own = self.channel_columns(merged)
            width = len(columns)
            if own:
                scores, ranks = merged.scores, merged.ranks
            else:
                present = columns >= 0
                scores, ranks = np.full((n, width), np.nan, np.float32), np.full((n, width), -1, np.int32)
                scores[:, present] = merged.scores[:, columns[present]]
                ranks[:, present] = merged.ranks[:, columns[present]]
            unscored = np.isnan(scores)
        if "recall" in groups:
            per_channel = out[:, :3 * width].reshape(n, width, 3)
            np.copyto(per_channel[:, :, 0], np.where(unscored, np.float32(0.0), scores))
            np.take(self._inverse(max(int(ranks.max(initial=0)), n) + 2), ranks + 1, out=per_channel[:, :, 1], mode="clip")
            proposed = ranks >= 0
            per_channel[:, :, 2] = proposed
            out[:, 3 * width] = np.where(merged.primary >= 0, self._inverse(n + 1)[1:n + 1], 0.0)
            out[:, 3 * width + 1] = per_channel[:, :, 2] @ np.ones(width, np.float32)   # the fastest row sum here
        if "history" in groups:
            genres = self.table.genres
            recent = context.sequence[-PROFILE_ITEMS:]
            candidates = out[:, genre_columns] if genre_columns is not None else genres[items]
            out[:, at["overlap"]] = candidates @ (genres[recent].sum(axis=0) / max(len(recent), 1))
        if "ncf" in groups:
            out[:, at["ncf"]] = self.ncf.score(context.user, context.user_features, items)
        if "list" in groups:
            # one row per channel: numpy reduces a few long contiguous rows far faster than a
            # few short columns
            shares = np.ascontiguousarray(scores.T)
            shares -= np.fmax.reduce(shares, axis=1, initial=-np.inf)[:, None]
            np.exp(shares, out=shares)
            np.copyto(shares, 0.0, where=unscored.T)
            shares /= np.maximum(shares.sum(axis=1), np.finfo(np.float32).tiny)[:, None]
            out[:, at["shares"]:at["shares"] + width] = shares.T
            if "ncf" in groups:
                share = np.exp(out[:, at["ncf"]] - out[:, at["ncf"]].max(initial=-np.inf))
                out[:, at["shares"] + width] = share / share.sum()


def folded_weight(columns: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                  weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((x[:, columns] - mean) * scale) @ weight as x[:, :width] @ by_column + shift: a row per
    feature column up to the last one read (zeros for the others), and the shift."""
    by_column = np.zeros((int(columns.max()) + 1 if len(columns) else 0, weight.shape[1]), np.float32)
    np.add.at(by_column, columns, scale[:, None] * weight)
    return by_column, -(mean * scale) @ weight


class ProjectedFeatures:
    """`matrix(context, merged) @ weight` for a model whose first layer reads the features
    linearly, computed in three parts: the item-only columns' share once per item when made
    (with `per_item`, a table the model adds per item anyway), the request-only columns' once
    per request, and only the columns that vary between the candidates per candidate.
    `weight` has a row per feature column (zeros for the columns the model does not read)."""

    def __init__(self, features: RankFeatures, weight: np.ndarray, per_item: np.ndarray | None = None):
        by_column = np.zeros((features.width, weight.shape[1]), np.float32)
        by_column[:len(weight)] = weight
        weight, self.features = by_column, features
        table = np.zeros((len(features.table.popularity), weight.shape[1]), np.float32)
        if per_item is not None:
            table += per_item
        for first, block in features.item_blocks:
            table += block @ weight[first:first + block.shape[1]]
        self.per_item = table
        self.request_weight = weight[features.request_columns]
        self.varying_weight = np.ascontiguousarray(weight[features.varying_columns])

    def __call__(self, context: RequestContext, merged: Merged) -> np.ndarray:
        out = self.per_item[merged.items]
        out += self.features.varying(context, merged) @ self.varying_weight
        out += self.features.request_values(context) @ self.request_weight
        return out
