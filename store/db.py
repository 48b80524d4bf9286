"""One connection to the event store's database, SQLite or PostgreSQL, behind one interface.

SQL is written once, with `:name` parameters (turned into psycopg's `%(name)s` for
PostgreSQL); the schema's few type names that differ are filled in per dialect. Writes are
serialised: SQLite takes its write lock at `BEGIN IMMEDIATE`, PostgreSQL an advisory lock in
each write transaction, so sequence numbers are handed out in commit order and a reader that
has seen sequence number N has seen every row before it. Reads run in one snapshot
(SQLite's WAL read transaction, PostgreSQL's REPEATABLE READ).

- a path, or `sqlite:///relative/path` / `sqlite:////absolute/path`: SQLite in WAL mode with full fsync, the
  embedded default, safe with several processes;
- `postgresql://user@host:port/db`: PostgreSQL through psycopg 3 (the `postgres` extra).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from movierec.errors import MovieRecError

WRITE_LOCK = 0x6D6F7669  # the PostgreSQL advisory lock every write transaction takes
BUSY_SECONDS = 30
TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "bytes": "BLOB"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "bytes": "BYTEA"},
}
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class StoreError(MovieRecError):
    """The event store cannot be opened or used as asked."""


def redact(url: str) -> str:
    """A store URL without its password, for messages and manifests."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Database:
    """A connection and its dialect; one statement at a time per process-wide lock."""

    def __init__(self, url: str | Path):
        self.url = str(url)
        self._lock = threading.RLock()
        if self.url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._conn = self._connect_postgresql()
        else:
            self.dialect = "sqlite"
            self._conn = self._connect_sqlite()

    def _connect_sqlite(self):
        path = Path(self.url.removeprefix("sqlite:///"))  # as SQLAlchemy: sqlite:////abs/path, sqlite:///rel/path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the SQLite store {path}: {exc}") from None
        self.location = str(path.resolve())
        return conn

    def _connect_postgresql(self):
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL store needs psycopg 3: pip install 'movierec[postgres]'") from None
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redact(self.url)}: {str(exc).strip().splitlines()[0]}") from None
        self.location = redact(self.url)
        return conn

    @property
    def errors(self) -> tuple:
        if self.dialect == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    def sql(self, statement: str) -> str:
        statement = statement.format(**TYPES[self.dialect])
        if self.dialect == "sqlite":
            return statement
        return _PARAMETER.sub(r"%(\1)s", statement.replace("%", "%%"))

    @contextmanager
    def transaction(self, write: bool) -> Iterator["Transaction"]:
        """A write transaction (serialised with every other writer) or a read-only snapshot;
        committed when the block ends, rolled back if it raises."""
        with self._lock:
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Transaction(self)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                with self._conn.transaction():
                    if write:
                        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    else:
                        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield Transaction(self)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Transaction:
    def __init__(self, db: Database):
        self.db = db

    def execute(self, statement: str, params: dict | None = None):
        return self.db._conn.execute(self.db.sql(statement), params or {})

    def rows(self, statement: str, params: dict | None = None) -> list[tuple]:
        return list(self.execute(statement, params).fetchall())

    def value(self, statement: str, params: dict | None = None):
        row = self.execute(statement, params).fetchone()
        return row[0] if row else None

    def execute_many(self, statement: str, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        sql = self.db.sql(statement)
        if self.db.dialect == "sqlite":
            self.db._conn.executemany(sql, rows)
        else:
            with self.db._conn.cursor() as cursor:
                cursor.executemany(sql, rows)
