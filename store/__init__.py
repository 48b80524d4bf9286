"""The event store: what users did and what the catalogue holds, in a real database (SQLite,
the embedded default, or PostgreSQL), written by `movierec data` and the ingestion RPCs and
read back by builds (`Snapshot`) and by servers following it."""
