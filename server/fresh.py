"""Freshness without a rebuild: what a server worker knows of the event store beyond its bundle.

`FreshState` belongs to one served bundle (`Pipeline.fresh`): the events stored after the
bundle's snapshot, per user, as ids of the served catalogue (they are seen items, and recall
reads them as the user's latest history); the items added or changed since (the pipeline's
catalogue grows); the side features of users added or changed; and the rankings computed when
a user's feedback arrived, each valid while the user has no newer event.

`Follower` keeps the served bundle's state current: every worker reads the store after its
cursors every `--feed-interval` seconds, and right after it writes, so what any worker
acknowledged reaches every other within an interval. A new bundle's state is caught up from
its own snapshot before it is swapped in; after a crash the same catch-up replays every event
the bundle does not hold.

`rankings_for` is the write path's work: recall and rank for each user with fresh events, as a
request without context would be answered, stored so that reads stay as cheap as a known user's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import numpy as np

from movierec.blend.quotas import MAX_N
from movierec.rank.precomputed import UserRanking, rank_user
from movierec.store.events import EventStore

log = logging.getLogger("movierec.server")

SLOT_NAMES = ("popular", "new")
NO_EVENTS = (np.zeros(0, np.int64), np.zeros(0, np.int8))
EVENTS_PER_READ = 100_000


@dataclass
class Changes:
    """What the store holds after a state's cursors, read in one pass."""

    events: list       # (seq, user, item, rating)
    items: list        # (change, raw_id, title, year, genres, plot)
    users: list        # (change, raw_id, gender, age, occupation, zip_code)
    rankings: list     # (id, user, bundle, through_seq, payload)


@dataclass
class FreshState:
    seq: int                  # events up to this log position are in the bundle or applied here
    change: int               # catalogue changes up to here are applied
    ranking_id: int = 0
    events_of: dict = field(default_factory=dict)      # raw user -> list of (catalogue id, rating), oldest first
    last_seq: dict = field(default_factory=dict)       # raw user -> seq of their latest event
    rankings_of: dict = field(default_factory=dict)    # raw user -> (through_seq, UserRanking)
    features_of: dict = field(default_factory=dict)    # raw user -> (gender, age, occupation, zip code)
    _arrays: dict = field(default_factory=dict)

    def events(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's fresh events as (catalogue ids, ratings), oldest first (empty for most users)."""
        found = self._arrays.get(user)
        if found is None:
            events = self.events_of.get(user)
            if events is None:
                return NO_EVENTS
            found = self._arrays[user] = (np.array([item for item, _ in events], dtype=np.int64),
                                          np.array([rating for _, rating in events], dtype=np.int8))
        return found

    def ranking(self, user: int) -> UserRanking | None:
        stored = self.rankings_of.get(user)
        return stored[1] if stored is not None and stored[0] == self.last_seq.get(user) else None

    def side_features(self, user: int) -> tuple | None:
        return self.features_of.get(user)

    def cursors(self) -> tuple[int, int, int]:
        return self.seq, self.change, self.ranking_id

    def apply(self, pipeline, changes: Changes) -> None:
        """Bring the state (and the pipeline's catalogue) up to `changes`; runs in the thread
        that serves requests, so a request sees all of one poll or none of it."""
        if changes.items:
            pipeline.add_items([row[1:] for row in changes.items])
            self.change = max(self.change, max(row[0] for row in changes.items))
        for change, user, gender, age, occupation, zip_code in changes.users:
            self.features_of[user] = (gender, age, occupation, zip_code)
            self.change = max(self.change, change)
        item_of_raw = pipeline.catalogue.item_of_raw
        for seq, user, item, rating in changes.events:
            if seq <= self.seq:
                continue
            self.events_of.setdefault(user, []).append((item_of_raw[item], rating))
            self.last_seq[user] = seq
            self._arrays.pop(user, None)
            self.seq = seq
        version = pipeline.bundle.version
        for row_id, user, bundle, through_seq, payload in changes.rankings:
            if bundle == version:
                self.rankings_of[user] = (through_seq, UserRanking.from_bytes(payload, SLOT_NAMES))
            self.ranking_id = row_id


def read_changes(store: EventStore, cursors: tuple[int, int, int], known: dict, limit: int = EVENTS_PER_READ) -> Changes:
    """Everything after the cursors; events first, so that the items they name are read too
    (`known`: the catalogue's raw ids; an event may name a stored item no bundle has held)."""
    seq, change, ranking_id = cursors
    events = store.events_after(seq, limit)
    items = store.items_after(change)
    listed = {row[1] for row in items}
    missing = sorted({item for _, _, item, _ in events if item not in known and item not in listed})
    items += [(change, *row) for row in store.items_by_id(missing)]
    return Changes(events, items, store.users_after(change), store.rankings_after(ranking_id))


def catch_up(pipeline, store: EventStore) -> FreshState:
    """A new bundle's state: everything the store holds after the bundle's snapshot. A bundle
    that records none is taken to hold what the store has now."""
    snapshot = pipeline.bundle.manifest.get("snapshot")
    if snapshot:
        seq, change = int(snapshot["seq"]), int(snapshot["change"])
    else:
        seq, change = store.positions()
        log.warning("bundle %s records no event-store snapshot: events stored before now (up to %d) are taken "
                    "as part of it", pipeline.bundle.version, seq)
    state = FreshState(seq, change)
    while True:
        changes = read_changes(store, state.cursors(), pipeline.catalogue.item_of_raw)
        state.apply(pipeline, changes)
        if len(changes.events) < EVENTS_PER_READ:
            return state


def user_ranking(pipeline, user: int) -> UserRanking:
    """Recall and rank for `user` (raw id) with their fresh events, as a request without
    context would be answered."""
    context = pipeline.context_of(user)
    pools = {"popular": pipeline.popular_pool, "new": pipeline.new_pool}
    return rank_user(pipeline.bundle.recaller, pipeline.bundle.ranker, context, pools, MAX_N)


def rankings_for(pipeline, store: EventStore, users: list[int]) -> int:
    """Compute the rankings of `users` after their latest events and store them in one
    transaction; returns how many."""
    state, version = pipeline.fresh, pipeline.bundle.version
    rankings = [(user, version, state.last_seq[user], user_ranking(pipeline, user).to_bytes())
                for user in users if user in state.last_seq]
    store.put_rankings(rankings)
    return len(rankings)


class Follower:
    """Polls the store for the served bundle's state."""

    def __init__(self, store: EventStore, holder, interval: float):
        self.store, self.holder, self.interval = store, holder, interval
        self._lock = asyncio.Lock()

    async def poll(self) -> None:
        async with self._lock:
            served = self.holder.served
            if served is None or served.pipeline.fresh is None:
                return
            pipeline = served.pipeline
            changes = await asyncio.to_thread(read_changes, self.store, pipeline.fresh.cursors(),
                                              pipeline.catalogue.item_of_raw)
            pipeline.fresh.apply(pipeline, changes)

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # a store that is away for a while: keep serving what we have
                log.warning("cannot follow the event store: %s", exc)
            await asyncio.sleep(self.interval)
