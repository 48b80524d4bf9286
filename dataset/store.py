"""The normalised on-disk dataset: parquet tables plus a manifest with checksums.

Layout of a dataset directory::

    manifest.json     format version, source files (sha256), counts, parse reports, vocabularies
    ratings.parquet   user, item, rating, timestamp, row   (contiguous ids, 0 = padding)
    users.parquet     user, raw_id, gender, age, occupation, zip_prefix, *_idx side features
    items.parquet     item, raw_id, title, year, genres[, plot]

Users and items get contiguous ids 1..N in raw-id order over those that have ratings;
`raw_id` maps them back, so raw MovieLens ids go in and out of every later stage.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.errors import MovieRecError
from movierec.files import MANIFEST, read_manifest, replace_dir, sha256_file, verify_files, write_json

from .features import USER_FEATURES, ZIP_PREFIX_LEN, FeatureEncoder
from .readers import DataError, RawRelease

FORMAT_VERSION = 1
TABLES = ("ratings.parquet", "users.parquet", "items.parquet")
REMEDY = "re-run `movierec data`"
USER_COLUMNS = ("user", "raw_id", *USER_FEATURES, *(f"{f}_idx" for f in USER_FEATURES))
ITEM_COLUMNS = ("item", "raw_id", "title", "year", "genres")
COLUMNS = {"ratings.parquet": ("user", "item", "rating", "timestamp", "row"),
           "users.parquet": USER_COLUMNS, "items.parquet": ITEM_COLUMNS}


def read_table(path: Path, columns: tuple, error: type[MovieRecError], remedy: str) -> pd.DataFrame:
    """A parquet table that must have `columns`; anything else is refused with what is missing."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise error(f"{path.name}: not a readable parquet table ({type(exc).__name__}); {remedy}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise error(f"{path.parent.name}/{path.name} lacks the column(s) {', '.join(missing)}; {remedy}")
    return table


def normalise(release: RawRelease) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Raw release -> (ratings, users, items, vocabularies) with contiguous ids."""
    user_raw = np.sort(release.ratings.user_raw.unique())
    item_raw = np.sort(release.ratings.movie_raw.unique())
    user_of = pd.Series(np.arange(1, len(user_raw) + 1, dtype=np.int32), index=user_raw)
    item_of = pd.Series(np.arange(1, len(item_raw) + 1, dtype=np.int32), index=item_raw)

    ratings = pd.DataFrame({
        "user": user_of.loc[release.ratings.user_raw].to_numpy(),
        "item": item_of.loc[release.ratings.movie_raw].to_numpy(),
        "rating": release.ratings.rating.to_numpy(),
        "timestamp": release.ratings.timestamp.to_numpy(),
        "row": release.ratings.row.to_numpy(),
    })

    users = release.users.set_index("user_raw").loc[user_raw].reset_index()
    users = pd.DataFrame({
        "user": user_of.to_numpy(),
        "raw_id": user_raw,
        "gender": users.gender.to_numpy(),
        "age": users.age.to_numpy(np.int32),
        "occupation": users.occupation.to_numpy(),
        "zip_prefix": users.zip.str[:ZIP_PREFIX_LEN].to_numpy(),
    })
    encoder = FeatureEncoder.fit(users)
    for feature in USER_FEATURES:
        users[f"{feature}_idx"] = encoder.encode(feature, users[feature]).astype(np.int32)

    movies = release.movies.set_index("movie_raw").loc[item_raw].reset_index()
    items = pd.DataFrame({
        "item": item_of.to_numpy(),
        "raw_id": item_raw,
        "title": movies.title.to_numpy(),
        "year": movies.year.to_numpy(np.int32),
        "genres": movies.genres.to_numpy(),
    })
    if "plot" in movies:
        items["plot"] = movies["plot"].fillna("").to_numpy()
    return ratings, users, items, encoder.to_dict()


def write_dataset(release: RawRelease, out_dir: str | Path, source: str,
                  source_files: dict[str, str], store: dict | None = None) -> Path:
    """Normalise `release` into `out_dir`, atomically: a temp dir renamed into place. `store`:
    the event-store snapshot the release was read from (its log position, recorded so that a
    server knows which events a bundle of this dataset holds)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    ratings, users, items, vocabularies = normalise(release)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        ratings.to_parquet(tmp / "ratings.parquet", index=False)
        users.to_parquet(tmp / "users.parquet", index=False)
        items.to_parquet(tmp / "items.parquet", index=False)
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": release.name,
            "source": source,
            "source_files": source_files,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "counts": {
                "ratings": len(ratings), "users": len(users), "items": len(items),
                "movies_without_ratings": int(len(release.movies) - len(items)),
                "malformed_lines": sum(r.malformed for r in release.reports),
            },
            "has_timestamps": bool((ratings.timestamp > 0).any()),
            "parse_reports": [r.to_dict() for r in release.reports],
            "vocabularies": vocabularies,
            **({"store": store} if store else {}),
            "checksums": {name: sha256_file(tmp / name) for name in TABLES},
        }
        write_json(tmp / MANIFEST, manifest)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def drop_last_ratings(path: str | Path, count: int) -> int:
    """Rewrite the dataset at `path` without each user's last `count` ratings (in time order),
    atomically, with the catalogue and every id unchanged: runs trained on it and bundles built
    from it hold out earlier items than those of the full dataset, so that a ranker can train
    on more lists per user without leakage (`train ranker --more-lists`). Returns the ratings
    dropped."""
    from .sequences import time_order

    path = Path(path)
    dataset = load_dataset(path)
    ratings = dataset.ratings
    order = time_order(ratings)   # by user, then time
    users = ratings.user.to_numpy()[order]
    ends = np.flatnonzero(np.r_[users[1:] != users[:-1], True])   # each user's last rating in `order`
    next_end = ends[np.searchsorted(ends, np.arange(len(order)))]
    from_end = np.empty(len(order), dtype=np.int64)   # 0 for each user's last rating
    from_end[order] = next_end - np.arange(len(order))
    kept = ratings[from_end >= count].reset_index(drop=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        kept.to_parquet(tmp / "ratings.parquet", index=False)
        for name in TABLES[1:]:
            shutil.copy2(path / name, tmp / name)
        manifest = dict(dataset.manifest)
        manifest["counts"] = {**manifest["counts"], "ratings": len(kept)}
        manifest["without_last"] = int(manifest.get("without_last", 0)) + count
        manifest["checksums"] = {name: sha256_file(tmp / name) for name in TABLES}
        write_json(tmp / MANIFEST, manifest)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(ratings) - len(kept)


def to_contiguous(ids: pd.Series, raw_ids: pd.Series, query) -> np.ndarray:
    """Map raw MovieLens ids in `query` to contiguous ids through a table's (id, raw_id)
    columns; 0 where a raw id is unknown."""
    lookup = pd.Series(ids.to_numpy(), index=raw_ids.to_numpy())
    bounded = [int(q) if -2**63 <= int(q) < 2**63 else -1 for q in query]  # ids past int64 are unknown
    return lookup.reindex(np.asarray(bounded, dtype=np.int64)).fillna(0).to_numpy(np.int64)


class Catalogue:
    """Id maps over `items` and `users` tables with (item | user, raw_id) columns, shared by
    the dataset and the serving bundle."""

    items: pd.DataFrame
    users: pd.DataFrame

    @property
    def num_items(self) -> int:
        return len(self.items)

    def item_raw_ids(self) -> np.ndarray:
        """raw MovieLens id of each contiguous item id (index 0 = padding -> 0)."""
        return np.concatenate([[0], self.items.raw_id.to_numpy()])

    def item_ids(self, raw_ids) -> np.ndarray:
        """Contiguous ids for raw MovieLens ids; 0 where the raw id is unknown."""
        return to_contiguous(self.items.item, self.items.raw_id, raw_ids)

    def user_ids(self, raw_ids) -> np.ndarray:
        return to_contiguous(self.users.user, self.users.raw_id, raw_ids)

    def user_raw_ids(self) -> np.ndarray:
        """raw MovieLens id of each contiguous user id (index 0 = unknown user -> 0)."""
        return np.concatenate([[0], self.users.raw_id.to_numpy()])


@dataclass
class Dataset(Catalogue):
    """A loaded normalised dataset."""

    path: Path
    manifest: dict
    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def num_users(self) -> int:
        return len(self.users)

    @cached_property
    def encoder(self) -> FeatureEncoder:
        return FeatureEncoder.from_dict(self.manifest["vocabularies"])

    def signature(self) -> dict:
        """What a model trained on this dataset depends on: its users' and items' ids (a model
        indexes its tables by the contiguous ids, which follow the raw ids)."""
        import hashlib

        return {name: {"count": len(ids) - 1, "sha256": hashlib.sha256(ids.astype("<i8").tobytes()).hexdigest()}
                for name, ids in (("users", self.user_raw_ids()), ("items", self.item_raw_ids()))}

    def before(self, cut: str) -> "Dataset":
        """The same catalogue and users with only the ratings before the time cut (UTC); no cut
        ("") keeps them all. Ids stay as they are, so models trained on it fit the full data."""
        if not cut:
            return self
        from dataclasses import replace

        ratings = self.ratings[self.ratings.timestamp.to_numpy() < cut_time(cut)].reset_index(drop=True)
        if not len(ratings):
            raise DataError(f"{self.path}: no rating before {cut}")
        return replace(self, ratings=ratings)


def to_release(dataset: Dataset, drop_users=(), drop_movies=()) -> RawRelease:
    """The dataset as a parsed release again (raw ids), without some users' or movies' ratings:
    what experiments that hold a share of the data out write a dataset of their own from."""
    users_raw, items_raw = dataset.user_raw_ids(), dataset.item_raw_ids()
    r = dataset.ratings
    ratings = pd.DataFrame({"user_raw": users_raw[r.user.to_numpy()], "movie_raw": items_raw[r.item.to_numpy()],
                            "rating": r.rating.to_numpy(), "timestamp": r.timestamp.to_numpy(), "row": r.row.to_numpy()})
    ratings = ratings[~ratings.user_raw.isin(drop_users) & ~ratings.movie_raw.isin(drop_movies)].reset_index(drop=True)
    users = pd.DataFrame({"user_raw": dataset.users.raw_id, "gender": dataset.users.gender, "age": dataset.users.age,
                          "occupation": dataset.users.occupation, "zip": dataset.users.zip_prefix})
    movies = dataset.items.rename(columns={"raw_id": "movie_raw"}).drop(columns="item")
    return RawRelease(dataset.name, ratings, users, movies, [], {"ratings": "variant"})


def cut_time(text: str) -> int:
    """Seconds since the epoch of a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM[:SS]), UTC."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip().removesuffix("Z"))
    except ValueError:
        raise DataError(f"a time cut is a date like 2000-12-01 (UTC), not {text[:40]!r}") from None
    return int(moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp())


def load_dataset(path: str | Path, verify: bool = True) -> Dataset:
    path = Path(path)
    manifest = read_manifest(path, "format_version", FORMAT_VERSION, DataError, "movierec dataset",
                             "create one with `movierec data --source ...`")
    checksums = manifest.get("checksums", {})
    if set(TABLES) - set(checksums):
        raise DataError(f"{path}: the manifest lists no checksum for {sorted(set(TABLES) - set(checksums))}; {REMEDY}")
    if verify:
        verify_files(path, {name: checksums[name] for name in TABLES}, DataError, REMEDY)
    else:
        missing = [name for name in TABLES if not (path / name).is_file()]
        if missing:
            raise DataError(f"{path}: {missing[0]} is missing; {REMEDY}")
    ratings, users, items = (read_table(path / name, COLUMNS[name], DataError, REMEDY) for name in TABLES)
    return Dataset(path=path, manifest=manifest, ratings=ratings, users=users, items=items)
