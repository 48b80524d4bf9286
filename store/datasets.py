"""Normalised datasets written from the event store: a MovieLens release goes into the store
and comes out as the snapshot the dataset is written from, so a dataset, and every bundle built
from it, records the log position it holds (`manifest["store"]`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from movierec.dataset.readers import RawRelease
from movierec.dataset.store import write_dataset

from .db import StoreError
from .events import EventStore, Snapshot

STORE_RELEASE = "store"  # the dataset name of a store no release was imported into


def write_snapshot(store: EventStore, out: Path, source: str, source_files: dict, as_of: int | None = None,
                   reports: list | None = None) -> Snapshot:
    """The store's snapshot (up to `as_of`, seconds) as a normalised dataset in `out`."""
    snapshot = store.snapshot(as_of)
    if not len(snapshot.ratings):
        raise StoreError(f"{store.location} holds no event stored by then; import a release with `movierec data`"
                         if as_of is not None else f"{store.location} holds no event yet; import a release with "
                         "`movierec data` or send feedback")
    release = replace(snapshot.release(store.release_name() or STORE_RELEASE), reports=reports or [])
    write_dataset(release, out, source, source_files, store=snapshot.describe(store.location))
    return snapshot


def import_and_write(store: EventStore, release: RawRelease, out: Path, source: str, source_files: dict) -> dict:
    """`movierec data` with a store: the release into the store, then the dataset from it."""
    imported = store.import_release(release)
    snapshot = write_snapshot(store, out, source, source_files, reports=release.reports)
    return {**imported, "snapshot": snapshot.describe(store.location)}
