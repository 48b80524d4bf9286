"""The event store: users, items and feedback in SQLite (the embedded default) or PostgreSQL,
one schema (`schema`) and one set of SQL (`db`).

Writers: `add_feedback` (validated, idempotent by event id, committed before it returns),
`upsert_items`, `upsert_users`, `import_release` (a MovieLens release; importing it again adds
nothing). Readers: `snapshot` (everything up to a log position or a point in time, for a
build), and the feeds a server follows (`events_after`, `items_after`, `users_after`,
`rankings_after`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.dataset.readers import GENRES, RawRelease, age_bucket, year_from_title

from .db import Database, StoreError, Transaction
from .schema import LATEST, MIGRATIONS

# kind -> the rating it implies (None: the event gives one, 1..5)
KINDS = {"rating": None, "watch": 3, "like": 5, "dislike": 1}
MAX_ID = 2 ** 63 - 1
MAX_EVENT_ID = 128
EARLIEST = 631_152_000      # 1990-01-01: an event time before it is refused
FUTURE_SLACK = 3_600        # seconds an event time may lie ahead of the server's clock
MAX_TITLE, MAX_PLOT, MAX_TEXT, MAX_POSTER = 300, 20_000, 64, 4_096
IN_CHUNK = 500              # ids per IN (...) list
GENRE_OF = {g.lower(): g for g in GENRES}
COLUMN_INDEX = {"users": {"raw_id": 0}, "items": {"raw_id": 0}, "feedback": {"event_id": 1}}  # in `SELECT *` rows


@dataclass
class Event:
    event_id: str
    user: int            # raw user id
    item: int            # raw movie id
    kind: str = "rating"
    rating: int = 0      # 1..5 for kind "rating", else 0 (the kind implies one)
    timestamp: int = 0   # seconds since the epoch; 0 = now

    def stored_rating(self) -> int:
        implied = KINDS[self.kind]
        return self.rating if implied is None else implied


@dataclass
class ItemRecord:
    raw_id: int
    title: str
    year: int = 0
    genres: tuple = ()
    plot: str = ""
    poster: np.ndarray | None = None


@dataclass
class UserRecord:
    raw_id: int
    gender: str = ""
    age: int = 0
    occupation: str = ""
    zip_code: str = ""


@dataclass
class Rejected:
    index: int       # position in the request
    key: str         # event id, or the item / user id
    reason: str


@dataclass
class FeedbackResult:
    accepted: int                  # stored by this call
    duplicates: int                # already stored (same event id, same event): nothing written
    rejected: list[Rejected]
    last_seq: int                  # the store's log position after the call
    users: list[int] = field(default_factory=list)   # raw users with events stored by this call


@dataclass
class UpsertResult:
    inserted: int
    updated: int
    rejected: list[Rejected]


@dataclass
class Snapshot:
    seq: int                 # every event up to this log position, none after
    change: int              # the catalogue's change counter when it was taken
    taken_at: int
    ratings: pd.DataFrame    # seq, user_raw, movie_raw, rating, timestamp
    users: pd.DataFrame      # user_raw, gender, age, occupation, zip
    movies: pd.DataFrame     # movie_raw, title, year, genres, plot

    def release(self, name: str) -> RawRelease:
        """As a parsed MovieLens release: the normalised dataset is written from it the same way."""
        ratings = pd.DataFrame({"user_raw": self.ratings.user_raw, "movie_raw": self.ratings.movie_raw,
                                "rating": self.ratings.rating, "timestamp": self.ratings.timestamp,
                                "row": self.ratings.seq})
        movies = self.movies if (self.movies["plot"] != "").any() else self.movies.drop(columns="plot")
        return RawRelease(name, ratings, self.users, movies, [], {"ratings": "store", "users": "store",
                                                                 "movies": "store"})

    def describe(self, location: str) -> dict:
        return {"store": location, "seq": self.seq, "change": self.change, "taken_at": self.taken_at,
                "ratings": len(self.ratings)}


def _ids(name: str, values) -> tuple[str, dict]:
    """`IN (:name0, ...)` over `values` (at most IN_CHUNK) and its parameters."""
    params = {f"{name}{j}": v for j, v in enumerate(values)}
    return "(" + ", ".join(f":{key}" for key in params) + ")", params


def _chunks(values: list, size: int = IN_CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _bad_id(value, what: str) -> str | None:
    if not isinstance(value, (int, np.integer)) or not 0 < int(value) <= MAX_ID:
        return f"{what} must be between 1 and {MAX_ID}"
    return None


def check_event(event: Event, now: int) -> str | None:
    """Why `event` cannot be stored as it is, or None."""
    if not event.event_id or len(event.event_id) > MAX_EVENT_ID or not event.event_id.isprintable():
        return f"event_id must be 1 to {MAX_EVENT_ID} printable characters"
    reason = _bad_id(event.user, "user id") or _bad_id(event.item, "item id")
    if reason:
        return reason
    if event.kind not in KINDS:
        return f"unknown event kind; kinds: {', '.join(KINDS)}"
    if KINDS[event.kind] is None and not 1 <= event.rating <= 5:
        return "a rating event needs a rating from 1 to 5"
    if KINDS[event.kind] is not None and event.rating:
        return f"a {event.kind} event carries no rating"
    if not EARLIEST <= event.timestamp <= now + FUTURE_SLACK:
        return "timestamp must be seconds since the epoch, after 1990 and not in the future"
    return None


def check_item(item: ItemRecord) -> str | None:
    reason = _bad_id(item.raw_id, "item id")
    if reason:
        return reason
    if not item.title.strip() or len(item.title) > MAX_TITLE:
        return f"title must be 1 to {MAX_TITLE} characters"
    if item.year and not 1870 <= item.year <= 2100:
        return "year must be 0 (unknown) or between 1870 and 2100"
    unknown = [g for g in item.genres if str(g).lower() not in GENRE_OF]
    if unknown:
        return f"unknown genre {unknown[0][:40]!r}; genres: {', '.join(GENRES)}"
    if len(item.plot) > MAX_PLOT:
        return f"plot is longer than {MAX_PLOT} characters"
    if item.poster is not None and (not 0 < len(item.poster) <= MAX_POSTER or not np.isfinite(item.poster).all()):
        return f"a poster vector has 1 to {MAX_POSTER} finite values"
    return None


def check_user(user: UserRecord) -> str | None:
    reason = _bad_id(user.raw_id, "user id")
    if reason:
        return reason
    if user.gender not in ("", "M", "F"):
        return "gender must be M, F or empty"
    if not 0 <= user.age <= 150:
        return "age must be between 0 (unknown) and 150"
    if len(user.occupation) > MAX_TEXT or len(user.zip_code) > MAX_TEXT:
        return f"occupation and zip code take at most {MAX_TEXT} characters"
    return None


class EventStore:
    def __init__(self, url: str | Path):
        self.db = Database(url)
        self.location = self.db.location
        try:
            self._migrate()
        except self.db.errors as exc:
            raise StoreError(f"{self.location}: cannot prepare the store ({exc})") from None

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- schema

    def _migrate(self) -> None:
        with self.db.transaction(write=True) as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                       "description TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            current = tx.value("SELECT MAX(version) FROM schema_version") or 0
            if current > LATEST:
                raise StoreError(f"{self.location} has schema version {current}, newer than this movierec knows "
                                 f"({LATEST}); upgrade movierec")
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (:v, :d, :t)",
                           {"v": version, "d": description, "t": int(time.time())})

    def schema_version(self) -> int:
        with self.db.transaction(write=False) as tx:
            return int(tx.value("SELECT MAX(version) FROM schema_version"))

    @staticmethod
    def _next_change(tx: Transaction) -> int:
        tx.execute("UPDATE counters SET value = value + 1 WHERE name = 'change'")
        return int(tx.value("SELECT value FROM counters WHERE name = 'change'"))

    @staticmethod
    def _existing(tx: Transaction, table: str, column: str, values: list) -> dict:
        """{value: row} of the rows of `table` whose `column` is among `values`."""
        found = {}
        for chunk in _chunks(sorted(set(values))):
            fragment, params = _ids("v", chunk)
            for row in tx.rows(f"SELECT * FROM {table} WHERE {column} IN {fragment}", params):
                found[row[COLUMN_INDEX[table][column]]] = row
        return found

    # ---------------------------------------------------------------- writes

    def add_feedback(self, events: list[Event], now: int | None = None) -> FeedbackResult:
        """Store the valid events in one transaction; the others come back with a reason and
        leave nothing behind. An event id already stored with the same event is a duplicate
        (nothing written); with another event, it is refused."""
        now = int(time.time()) if now is None else now
        stamped_by_server = {e.event_id for e in events if not e.timestamp}
        events = [e if e.timestamp else Event(e.event_id, e.user, e.item, e.kind, e.rating, now) for e in events]
        rejected, valid, in_batch = [], [], {}
        duplicates = 0
        for index, event in enumerate(events):
            reason = check_event(event, now)
            if reason is None and event.event_id in in_batch:
                if in_batch[event.event_id] == event:
                    duplicates += 1
                    continue
                reason = "event_id appears twice in the request with different events"
            if reason:
                rejected.append(Rejected(index, event.event_id[:MAX_EVENT_ID], reason))
                continue
            in_batch[event.event_id] = event
            valid.append((index, event))
        with self.db.transaction(write=True) as tx:
            items = self._existing(tx, "items", "raw_id", [e.item for _, e in valid])
            stored = self._existing(tx, "feedback", "event_id", [e.event_id for _, e in valid])
            fresh = []
            for index, event in valid:
                if event.item not in items:
                    rejected.append(Rejected(index, event.event_id, f"unknown item {event.item}"))
                elif event.event_id in stored:
                    _, _, user, item, kind, rating, ts, _ = stored[event.event_id]
                    if event.event_id in stamped_by_server:   # a retry: the first try's time stands
                        ts = event.timestamp
                    if (user, item, kind, rating, ts) == (event.user, event.item, event.kind, event.stored_rating(),
                                                          event.timestamp):
                        duplicates += 1
                    else:
                        rejected.append(Rejected(index, event.event_id, "event_id already stored for another event"))
                else:
                    fresh.append(event)
            users = sorted({e.user for e in fresh})
            new_users = sorted(set(users) - set(self._existing(tx, "users", "raw_id", users)))
            if new_users:
                change = self._next_change(tx)
                tx.execute_many("INSERT INTO users (raw_id, change, updated_at) VALUES (:u, :c, :t)",
                                [{"u": u, "c": change, "t": now} for u in new_users])
            tx.execute_many("INSERT INTO feedback (event_id, user_raw, item_raw, kind, rating, ts, stored_at) "
                            "VALUES (:e, :u, :i, :k, :r, :ts, :t)",
                            [{"e": e.event_id, "u": e.user, "i": e.item, "k": e.kind, "r": e.stored_rating(),
                              "ts": e.timestamp, "t": now} for e in fresh])
            last = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM feedback"))
        rejected.sort(key=lambda r: r.index)
        return FeedbackResult(len(fresh), duplicates, rejected, last, users)

    def _upsert(self, table: str, columns: tuple, records: list, check, row_of) -> UpsertResult:
        rejected, valid, ids = [], [], set()
        for index, record in enumerate(records):
            reason = check(record)
            if reason is None and record.raw_id in ids:
                reason = "the id appears twice in the request"
            if reason:
                rejected.append(Rejected(index, str(record.raw_id)[:24], reason))
                continue
            ids.add(record.raw_id)
            valid.append(record)
        now = int(time.time())
        inserted = 0
        if valid:
            names = ", ".join(columns)
            values = ", ".join(f":{c}" for c in columns)
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
            with self.db.transaction(write=True) as tx:
                inserted = len(ids - set(self._existing(tx, table, "raw_id", sorted(ids))))
                change = self._next_change(tx)
                tx.execute_many(f"INSERT INTO {table} ({names}, change, updated_at) VALUES ({values}, :change, :now) "
                                f"ON CONFLICT (raw_id) DO UPDATE SET {updates}, change = excluded.change, "
                                "updated_at = excluded.updated_at",
                                [{**row_of(r), "change": change, "now": now} for r in valid])
        return UpsertResult(inserted, len(valid) - inserted, rejected)

    def upsert_items(self, items: list[ItemRecord]) -> UpsertResult:
        """Add or change movies; each change is stamped for the servers following the store."""
        def row(item: ItemRecord) -> dict:
            poster = None if item.poster is None else np.asarray(item.poster, dtype="<f4").tobytes()
            return {"raw_id": int(item.raw_id), "title": item.title.strip(), "year": int(item.year),
                    "genres": "|".join(GENRE_OF[str(g).lower()] for g in item.genres), "plot": item.plot,
                    "poster": poster}
        return self._upsert("items", ("raw_id", "title", "year", "genres", "plot", "poster"), items, check_item, row)

    def upsert_users(self, users: list[UserRecord]) -> UpsertResult:
        def row(user: UserRecord) -> dict:
            return {"raw_id": int(user.raw_id), "gender": user.gender, "age": int(user.age),
                    "occupation": user.occupation, "zip_code": user.zip_code}
        return self._upsert("users", ("raw_id", "gender", "age", "occupation", "zip_code"), users, check_user, row)

    def import_release(self, release: RawRelease) -> dict:
        """A MovieLens release into the store: its users, movies and ratings (event ids
        `<release>:<user>:<movie>`). What is there already stays as it is, so importing the
        same release again adds nothing."""
        now = int(time.time())
        with self.db.transaction(write=True) as tx:
            other = tx.value("SELECT name FROM releases WHERE name <> :n", {"n": release.name})
            if other:
                raise StoreError(f"{self.location} holds the release {other}; the raw ids of {release.name} would "
                                 "mix with its own: give a store of its own with --store")
            tx.execute("INSERT INTO releases (name, imported_at) VALUES (:n, :t) ON CONFLICT (name) DO NOTHING",
                       {"n": release.name, "t": now})
            before = {table: int(tx.value(f"SELECT COUNT(*) FROM {table}")) for table in ("users", "items", "feedback")}
            change = self._next_change(tx)
            tx.execute_many("INSERT INTO users (raw_id, gender, age, occupation, zip_code, change, updated_at) "
                            "VALUES (:u, :g, :a, :o, :z, :c, :t) ON CONFLICT (raw_id) DO NOTHING",
                            [{"u": int(u), "g": str(g), "a": int(a), "o": str(o), "z": str(z), "c": change, "t": now}
                             for u, g, a, o, z in release.users[["user_raw", "gender", "age", "occupation", "zip"]]
                             .itertuples(index=False)])
            movies = release.movies if "plot" in release.movies else release.movies.assign(plot="")
            tx.execute_many("INSERT INTO items (raw_id, title, year, genres, plot, change, updated_at) "
                            "VALUES (:i, :title, :y, :g, :p, :c, :t) ON CONFLICT (raw_id) DO NOTHING",
                            [{"i": int(i), "title": str(title), "y": int(y), "g": str(g), "p": str(plot), "c": change,
                              "t": now} for i, title, y, g, plot in movies[["movie_raw", "title", "year", "genres", "plot"]]
                             .itertuples(index=False)])
            ratings = release.ratings
            prefix = release.name
            tx.execute_many("INSERT INTO feedback (event_id, user_raw, item_raw, kind, rating, ts, stored_at) "
                            "VALUES (:e, :u, :i, 'rating', :r, :ts, :t) ON CONFLICT (event_id) DO NOTHING",
                            ({"e": f"{prefix}:{u}:{i}", "u": int(u), "i": int(i), "r": int(r), "ts": int(ts), "t": now}
                             for u, i, r, ts in zip(ratings.user_raw.tolist(), ratings.movie_raw.tolist(),
                                                    ratings.rating.tolist(), ratings.timestamp.tolist())))
            after = {table: int(tx.value(f"SELECT COUNT(*) FROM {table}")) for table in before}
            if after["users"] == before["users"] and after["items"] == before["items"]:
                tx.execute("UPDATE counters SET value = value - 1 WHERE name = 'change'")  # nothing changed
            seq = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM feedback"))
            change = int(tx.value("SELECT value FROM counters WHERE name = 'change'"))
        return {"added": {table: after[table] - before[table] for table in before}, "seq": seq, "change": change}

    def put_rankings(self, rankings: list[tuple[int, str, int, bytes]]) -> None:
        """Users' rankings computed after their fresh events, as (user, bundle, through_seq,
        payload), in one transaction; each replaces the user's older ones."""
        with self.db.transaction(write=True) as tx:
            for user, bundle, through_seq, payload in rankings:
                tx.execute("DELETE FROM fresh_rankings WHERE user_raw = :u", {"u": user})
                tx.execute("INSERT INTO fresh_rankings (user_raw, bundle, through_seq, payload) "
                           "VALUES (:u, :b, :s, :p)", {"u": user, "b": bundle, "s": through_seq, "p": payload})

    # ---------------------------------------------------------------- reads

    def positions(self) -> tuple[int, int]:
        """(last feedback seq, catalogue change counter)."""
        with self.db.transaction(write=False) as tx:
            return (int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM feedback")),
                    int(tx.value("SELECT value FROM counters WHERE name = 'change'")))

    def release_name(self) -> str | None:
        """The MovieLens release imported into the store, if any."""
        with self.db.transaction(write=False) as tx:
            return tx.value("SELECT name FROM releases")

    def count(self, table: str) -> int:
        with self.db.transaction(write=False) as tx:
            return int(tx.value(f"SELECT COUNT(*) FROM {table}"))

    def snapshot(self, as_of: int | None = None) -> Snapshot:
        """Every event stored up to the time `as_of` (seconds; None: all), with the catalogue,
        read in one transaction."""
        with self.db.transaction(write=False) as tx:
            if as_of is None:
                seq = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM feedback"))
            else:
                seq = int(tx.value("SELECT COALESCE(MAX(seq), 0) FROM feedback WHERE stored_at <= :t", {"t": as_of}))
            change = int(tx.value("SELECT value FROM counters WHERE name = 'change'"))
            ratings = tx.rows("SELECT seq, user_raw, item_raw, rating, ts FROM feedback WHERE seq <= :s ORDER BY seq",
                              {"s": seq})
            users = tx.rows("SELECT raw_id, gender, age, occupation, zip_code FROM users ORDER BY raw_id")
            items = tx.rows("SELECT raw_id, title, year, genres, plot FROM items ORDER BY raw_id")
        ratings = pd.DataFrame(ratings, columns=["seq", "user_raw", "movie_raw", "rating", "timestamp"]).astype(
            {"seq": np.int64, "user_raw": np.int64, "movie_raw": np.int64, "rating": np.int8, "timestamp": np.int64})
        users = pd.DataFrame(users, columns=["user_raw", "gender", "age", "occupation", "zip"])
        users["age"] = [age_bucket(a) if a > 0 else 0 for a in users.age.tolist()]
        movies = pd.DataFrame(items, columns=["movie_raw", "title", "year", "genres", "plot"])
        movies["year"] = [y or year_from_title(t) for y, t in zip(movies.year.tolist(), movies.title.tolist())]
        return Snapshot(seq, change, int(time.time()), ratings, users, movies)

    def events_after(self, seq: int, limit: int = 10_000) -> list[tuple]:
        """(seq, user, item, rating) of the events after log position `seq`, in order."""
        with self.db.transaction(write=False) as tx:
            return tx.rows("SELECT seq, user_raw, item_raw, rating FROM feedback WHERE seq > :s ORDER BY seq "
                           "LIMIT :n", {"s": seq, "n": limit})

    def user_events_after(self, user: int, seq: int) -> list[tuple]:
        """(seq, item, rating) of one user's events after `seq`, in order."""
        with self.db.transaction(write=False) as tx:
            return tx.rows("SELECT seq, item_raw, rating FROM feedback WHERE user_raw = :u AND seq > :s ORDER BY seq",
                           {"u": user, "s": seq})

    def items_after(self, change: int) -> list[tuple]:
        """(change, raw_id, title, year, genres, plot) of the items changed after `change`."""
        with self.db.transaction(write=False) as tx:
            return tx.rows("SELECT change, raw_id, title, year, genres, plot FROM items WHERE change > :c "
                           "ORDER BY change", {"c": change})

    def items_by_id(self, raw_ids: list[int]) -> list[tuple]:
        """(raw_id, title, year, genres, plot) of these items."""
        found = []
        with self.db.transaction(write=False) as tx:
            for chunk in _chunks(raw_ids):
                fragment, params = _ids("v", chunk)
                found += tx.rows(f"SELECT raw_id, title, year, genres, plot FROM items WHERE raw_id IN {fragment}",
                                 params)
        return found

    def users_after(self, change: int) -> list[tuple]:
        """(change, raw_id, gender, age, occupation, zip_code) of the users changed after `change`."""
        with self.db.transaction(write=False) as tx:
            return tx.rows("SELECT change, raw_id, gender, age, occupation, zip_code FROM users WHERE change > :c "
                           "ORDER BY change", {"c": change})

    def rankings_after(self, row_id: int) -> list[tuple]:
        """(id, user, bundle, through_seq, payload) of the rankings stored after row `row_id`."""
        with self.db.transaction(write=False) as tx:
            return [(i, u, b, s, bytes(p)) for i, u, b, s, p in tx.rows(
                "SELECT id, user_raw, bundle, through_seq, payload FROM fresh_rankings WHERE id > :i ORDER BY id",
                {"i": row_id})]

    def poster(self, item: int) -> np.ndarray | None:
        with self.db.transaction(write=False) as tx:
            data = tx.value("SELECT poster FROM items WHERE raw_id = :i", {"i": item})
        return None if data is None else np.frombuffer(bytes(data), dtype="<f4").copy()

