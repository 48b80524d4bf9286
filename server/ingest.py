"""`movierec.v1.Ingest`: feedback, movies and users written to the event store, as admin calls.

A call is answered after its transaction commits, so what the reply counts as accepted is
durable. The worker that took it applies it at once (`Follower.poll`); the others within their
feed interval. After the reply, the users with new events get their rankings computed and
stored (`fresh.rankings_for`), one batch at a time, so that their next requests are answered as
cheaply as a known user's.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from movierec.store.db import StoreError
from movierec.store.events import Event, EventStore, ItemRecord, UserRecord

from . import guard
from .admin import AdminDenied
from .fresh import Follower, rankings_for
from .v1 import recommender_pb2 as pb

log = logging.getLogger("movierec.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Ingest"].full_name
MAX_BATCH = 1000
KIND_NAME = {pb.EVENT_KIND_RATING: "rating", pb.EVENT_KIND_WATCH: "watch", pb.EVENT_KIND_LIKE: "like",
             pb.EVENT_KIND_DISLIKE: "dislike"}
GENDER_NAME = {pb.GENDER_MALE: "M", pb.GENDER_FEMALE: "F", pb.GENDER_UNSPECIFIED: ""}


def to_event(message: pb.FeedbackEvent) -> Event:
    kind = KIND_NAME.get(message.kind, "rating" if message.kind == pb.EVENT_KIND_UNSPECIFIED else "unknown")
    return Event(message.event_id, message.user_id, message.item_id, kind, message.rating, message.timestamp)


def to_item(message: pb.Movie) -> ItemRecord:
    poster = np.asarray(message.poster, dtype=np.float32) if len(message.poster) else None
    return ItemRecord(message.item_id, message.title, message.year, tuple(message.genres), message.plot, poster)


def to_user(message: pb.User) -> UserRecord:
    features = message.side_features
    return UserRecord(message.user_id, GENDER_NAME.get(features.gender, "?"), features.age, features.occupation,
                      features.zip_code)


def rejected(items) -> list:
    return [pb.Rejected(index=r.index, key=r.key, reason=r.reason) for r in items]


class IngestService:
    def __init__(self, store: EventStore | None, holder, follower: Follower | None, admin, metrics, abort,
                 malformed):
        """Without a store every call is refused with FAILED_PRECONDITION."""
        self.store, self.holder, self.follower, self.admin = store, holder, follower, admin
        self.metrics, self.abort, self.malformed = metrics, abort, malformed
        self.pending: set[int] = set()
        self.wake = asyncio.Event()
        self.ranker = asyncio.create_task(self._rank_forever()) if store is not None else None

    def handlers(self) -> grpc.GenericRpcHandler:
        return guard.service(SERVICE_NAME, {
            "AddFeedback": guard.unary("AddFeedback", pb.AddFeedbackRequest, pb.AddFeedbackResponse,
                                       self.AddFeedback, self.malformed),
            "UpsertItems": guard.unary("UpsertItems", pb.UpsertItemsRequest, pb.UpsertResponse,
                                       self.UpsertItems, self.malformed),
            "UpsertUsers": guard.unary("UpsertUsers", pb.UpsertUsersRequest, pb.UpsertResponse,
                                       self.UpsertUsers, self.malformed)})

    async def _write(self, method: str, context, records: list, write: str):
        """Admin check, batch bound, the store's method `write` in a thread; the store being away
        is UNAVAILABLE (nothing was written: the transaction did not commit)."""
        try:
            self.admin.check(context)
        except AdminDenied as denied:
            log.warning("admin call %s refused for %s: %s", method, context.peer(), denied)
            await self.abort(context, method, denied.code, str(denied))
        if self.store is None:
            await self.abort(context, method, grpc.StatusCode.FAILED_PRECONDITION,
                             "this server follows no event store; start it with --store")
        if len(records) > MAX_BATCH:
            await self.abort(context, method, grpc.StatusCode.INVALID_ARGUMENT,
                             f"at most {MAX_BATCH} per call, got {len(records)}")
        try:
            result = await asyncio.to_thread(getattr(self.store, write), records)
        except (StoreError, *self.store.db.errors) as exc:
            log.error("%s: the event store failed: %s", method, exc)
            await self.abort(context, method, grpc.StatusCode.UNAVAILABLE,
                             "the event store is unavailable; nothing was written, retry later")
        try:
            await self.follower.poll()   # this worker serves what it acknowledges from the next request
        except Exception as exc:
            log.warning("cannot follow the event store: %s", exc)
        self.metrics.requests.labels(method, "OK").inc()
        return result

    async def AddFeedback(self, request, context):
        result = await self._write("AddFeedback", context, [to_event(e) for e in request.events],
                                   "add_feedback")
        for outcome, count in (("accepted", result.accepted), ("duplicate", result.duplicates),
                               ("rejected", len(result.rejected))):
            self.metrics.events.labels(outcome).inc(count)
        if result.users:
            self.pending.update(result.users)
            self.wake.set()
        return pb.AddFeedbackResponse(accepted=result.accepted, duplicates=result.duplicates,
                                      rejected=rejected(result.rejected))

    async def UpsertItems(self, request, context):
        result = await self._write("UpsertItems", context, [to_item(m) for m in request.items],
                                   "upsert_items")
        return pb.UpsertResponse(inserted=result.inserted, updated=result.updated, rejected=rejected(result.rejected))

    async def UpsertUsers(self, request, context):
        result = await self._write("UpsertUsers", context, [to_user(u) for u in request.users],
                                   "upsert_users")
        return pb.UpsertResponse(inserted=result.inserted, updated=result.updated, rejected=rejected(result.rejected))

    async def _rank_forever(self) -> None:
        """The users with new events, their rankings computed and stored, a batch at a time."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            users, self.pending = sorted(self.pending), set()
            served = self.holder.served
            if served is None or served.pipeline.fresh is None:
                continue
            try:
                await asyncio.to_thread(rankings_for, served.pipeline, self.store, users)
                await self.follower.poll()
            except Exception as exc:  # the rankings are a shortcut: without them requests go online
                log.warning("rankings of %d user(s) with new events not stored: %s", len(users), exc)

    def close(self) -> None:
        if self.ranker is not None:
            self.ranker.cancel()
