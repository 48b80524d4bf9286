"""The event store's schema, as numbered migrations applied in order.

A store records the migrations it has had in `schema_version`; opening one applies the
missing ones in a write transaction, and refuses a store made by a newer movierec. A new
migration is appended here, never an old one edited.

Tables:

- `users`: raw user id and side features (gender, age in years, occupation, zip code);
- `items`: raw movie id, title, year, genres ("A|B"), plot text, an optional poster vector
  (float32, little-endian bytes);
- `feedback`: one row per event, `seq` its position in the store's log (handed out in commit
  order), `event_id` unique (a redelivered event is recognised), raw user and item ids, the
  kind, the rating (given, or implied by the kind), the event's time and when it was stored;
- `counters`: the catalogue's change counter; every upsert of users or items stamps its rows
  with the next value, so a reader can follow changes after a position;
- `fresh_rankings`: per-user rankings computed when feedback arrives (`server.fresh`), the
  latest row of a user wins;
- `releases`: the MovieLens release imported into the store (one per store: raw ids of two
  releases would collide).
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "users, items, feedback, counters, fresh rankings", (
        """CREATE TABLE users (
            raw_id BIGINT PRIMARY KEY,
            gender TEXT NOT NULL DEFAULT '',
            age INTEGER NOT NULL DEFAULT 0,
            occupation TEXT NOT NULL DEFAULT '',
            zip_code TEXT NOT NULL DEFAULT '',
            change BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)""",
        "CREATE INDEX users_change ON users (change)",
        """CREATE TABLE items (
            raw_id BIGINT PRIMARY KEY,
            title TEXT NOT NULL,
            year INTEGER NOT NULL DEFAULT 0,
            genres TEXT NOT NULL DEFAULT '',
            plot TEXT NOT NULL DEFAULT '',
            poster {bytes},
            change BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)""",
        "CREATE INDEX items_change ON items (change)",
        """CREATE TABLE feedback (
            seq {id},
            event_id TEXT NOT NULL UNIQUE,
            user_raw BIGINT NOT NULL REFERENCES users (raw_id),
            item_raw BIGINT NOT NULL REFERENCES items (raw_id),
            kind TEXT NOT NULL,
            rating SMALLINT NOT NULL,
            ts BIGINT NOT NULL,
            stored_at BIGINT NOT NULL)""",
        "CREATE INDEX feedback_user ON feedback (user_raw, seq)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('change', 0)",
        """CREATE TABLE fresh_rankings (
            id {id},
            user_raw BIGINT NOT NULL,
            bundle TEXT NOT NULL,
            through_seq BIGINT NOT NULL,
            payload {bytes} NOT NULL)""",
        "CREATE INDEX fresh_rankings_user ON fresh_rankings (user_raw, id)",
        """CREATE TABLE releases (
            name TEXT PRIMARY KEY,
            imported_at BIGINT NOT NULL)""",
    )),
)

LATEST = MIGRATIONS[-1][0]
