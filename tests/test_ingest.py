"""The event store and the Ingest service, the same test bodies on SQLite (a real file) and on
PostgreSQL (a database made and dropped for each test run, at MOVIEREC_TEST_POSTGRES, by
default postgresql://postgres@127.0.0.1:5432/test; skipped, saying why, when no server answers)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import grpc
import numpy as np
import pandas as pd
import pytest

from conftest import ML100K, LiveServer
from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.client.loadtest import spawn_server
from movierec.dataset.readers import read_release
from movierec.dataset.store import load_dataset
from movierec.server.app import ServerConfig
from movierec.server.pipeline import Pipeline, RecommendInput
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc
from movierec.store.datasets import import_and_write
from movierec.store.db import StoreError
from movierec.store.events import Event, EventStore, ItemRecord, UserRecord
from movierec.store.schema import LATEST

POSTGRES = os.environ.get("MOVIEREC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")
TOKEN = "ingest-test-token"
NOW = int(time.time())


def _postgres_database():
    """A database of its own on the test server, dropped afterwards; a skip when none answers."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server, no driver: say why
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES} ({str(exc).strip().splitlines()[0]}); start one "
                    "(README: Event store) or point MOVIEREC_TEST_POSTGRES at one")
    name = f"movierec_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES)._replace(path=f"/{name}"))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _store_url(backend: str, directory):
    if backend == "sqlite":
        yield str(directory / "store.db")
    else:
        yield from _postgres_database()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    yield from _store_url(request.param, tmp_path)


@pytest.fixture
def store(store_url):
    events = EventStore(store_url)
    yield events
    events.close()


@pytest.fixture(scope="module")
def release():
    if not (ML100K / "u.data.gz").is_file():
        pytest.skip(f"ML-100K not found under {ML100K}")
    return read_release(ML100K)


def _catalogue(store: EventStore, items=(1, 2, 3, 50)) -> None:
    store.upsert_items([ItemRecord(i, f"Movie {i} (1995)", 1995, ("Drama",)) for i in items])


# ---------------------------------------------------------------- the store


def test_the_schema_is_migrated_once_and_a_newer_store_is_refused(store_url):
    first = EventStore(store_url)
    assert first.schema_version() == LATEST
    first.close()
    again = EventStore(store_url)    # opening again applies nothing twice
    with again.db.transaction(write=True) as tx:
        assert tx.value("SELECT COUNT(*) FROM schema_version") == LATEST
        tx.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (:v, 'future', 0)",
                   {"v": LATEST + 1})
    again.close()
    with pytest.raises(StoreError, match="newer than this movierec"):
        EventStore(store_url)


def test_importing_a_release_twice_adds_nothing_and_another_release_is_refused(store, release):
    first = store.import_release(release)
    assert first["added"] == {"users": 943, "items": 1682, "feedback": 100_000}
    again = store.import_release(release)
    assert again["added"] == {"users": 0, "items": 0, "feedback": 0}
    assert (again["seq"], again["change"]) == (first["seq"], first["change"]) == store.positions()
    other = dataclass_replace(release, name="ml-1m")
    with pytest.raises(StoreError, match="holds the release ml-100k"):
        store.import_release(other)
    assert store.count("feedback") == 100_000


def dataclass_replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


def test_a_dataset_written_from_the_store_equals_one_written_from_the_release(store, release, ml100k_dataset,
                                                                             tmp_path):
    import_and_write(store, release, tmp_path / "from-store", "test", release.files)
    from_store = load_dataset(tmp_path / "from-store")
    assert from_store.manifest["store"]["seq"] == store.positions()[0]
    direct = ml100k_dataset
    for table in ("users", "items"):
        pd.testing.assert_frame_equal(getattr(from_store, table), getattr(direct, table), check_dtype=False)
    columns = ["user", "item", "rating", "timestamp"]
    pd.testing.assert_frame_equal(from_store.ratings[columns], direct.ratings[columns], check_dtype=False)
    # the ties of equal timestamps keep the file's order: the same sequences
    from movierec.dataset.sequences import chronological

    a, b = chronological(from_store.ratings, from_store.num_users), chronological(direct.ratings, direct.num_users)
    np.testing.assert_array_equal(a.items, b.items)


def test_feedback_is_idempotent_by_event_id(store):
    _catalogue(store)
    events = [Event("a", 7, 1, "rating", 4, NOW), Event("b", 7, 2, "like", 0, NOW)]
    first = store.add_feedback(events)
    assert (first.accepted, first.duplicates, first.rejected, first.users) == (2, 0, [], [7])
    again = store.add_feedback(events + [events[0]])
    assert (again.accepted, again.duplicates, again.rejected) == (0, 3, [])
    assert store.count("feedback") == 2 and again.last_seq == first.last_seq
    changed = store.add_feedback([Event("a", 7, 3, "rating", 4, NOW)])
    assert changed.accepted == 0 and changed.rejected[0].reason == "event_id already stored for another event"
    assert [row[1:] for row in store.user_events_after(7, 0)] == [(1, 4), (2, 5)]  # a like counts as 5


def test_a_retry_of_an_event_the_server_stamped_is_a_duplicate(store):
    """An event sent without a timestamp gets the server's time; sent again later (the ack was lost),
    it is the same event, not a conflict."""
    _catalogue(store)
    unstamped = [Event("u1", 8, 1, "rating", 4), Event("u2", 8, 2, "like")]
    first = store.add_feedback(unstamped, now=NOW)
    retry = store.add_feedback(unstamped, now=NOW + 90)
    assert (first.accepted, retry.accepted, retry.duplicates, retry.rejected) == (2, 0, 2, [])
    changed = store.add_feedback([Event("u1", 8, 1, "rating", 2)], now=NOW + 90)
    assert changed.rejected[0].reason == "event_id already stored for another event"


def test_rejected_events_come_back_with_reasons_and_leave_nothing(store):
    _catalogue(store)
    before = (store.count("users"), store.count("feedback"))
    result = store.add_feedback([
        Event("ok", 11, 1, "rating", 5, NOW),
        Event("unknown item", 12, 999, "rating", 5, NOW),    # user 12 only here: must not be created
        Event("no rating", 12, 1, "rating", 0, NOW),
        Event("too high", 12, 1, "rating", 6, NOW),
        Event("watch with rating", 12, 1, "watch", 3, NOW),
        Event("kind", 12, 1, "stare", 0, NOW),
        Event("future", 12, 1, "rating", 3, NOW + 86_400),
        Event("ancient", 12, 1, "rating", 3, 100),
        Event("", 12, 1, "rating", 3, NOW),
        Event("user 0", 0, 1, "rating", 3, NOW),
        Event("ok", 11, 2, "rating", 5, NOW),                # same id, another event, same batch
    ])
    assert result.accepted == 1 and result.duplicates == 0
    reasons = {r.index: r.reason for r in result.rejected}
    assert sorted(reasons) == list(range(1, 11))
    assert reasons[1] == "unknown item 999" and "rating from 1 to 5" in reasons[2] and "rating from 1 to 5" in reasons[3]
    assert "carries no rating" in reasons[4] and "unknown event kind" in reasons[5]
    assert "not in the future" in reasons[6] and "after 1990" in reasons[7] and "event_id" in reasons[8]
    assert "user id" in reasons[9] and "twice in the request" in reasons[10]
    assert (store.count("users"), store.count("feedback")) == (before[0] + 1, before[1] + 1)
    assert store.user_events_after(12, 0) == []


def test_upserts_validate_count_and_stamp_changes(store):
    _, change = store.positions()
    result = store.upsert_items([ItemRecord(500, "A (2001)", 2001, ("comedy", "Drama"), "plot", np.ones(4)),
                                 ItemRecord(501, " ", 2001), ItemRecord(502, "B", 1700), ItemRecord(503, "C", 0, ("Noir",)),
                                 ItemRecord(504, "D", 0, (), "", np.array([np.nan]))])
    assert (result.inserted, result.updated) == (1, 0)
    assert [r.index for r in result.rejected] == [1, 2, 3, 4]
    assert store.upsert_items([ItemRecord(500, "A2", 2002)]).updated == 1
    assert [row[1:] for row in store.items_after(change)] == [(500, "A2", 2002, "", "")]
    users = store.upsert_users([UserRecord(9, "F", 30, "writer", "12345"), UserRecord(10, "X"),
                                UserRecord(11, age=200)])
    assert users.inserted == 1 and [r.index for r in users.rejected] == [1, 2]
    assert [row[1:] for row in store.users_after(change)] == [(9, "F", 30, "writer", "12345")]


# ---------------------------------------------------------------- the server


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, release, ml100k_dataset, trained_runs, tmp_path_factory):
    """A store holding ML-100K, the dataset written from it, a bundle of that dataset."""
    directory = tmp_path_factory.mktemp(f"ingest-{request.param}")
    urls = _store_url(request.param, directory)
    url = next(urls)
    store = EventStore(url)
    import_and_write(store, release, directory / "data", "test", release.files)
    store.close()
    root = directory / "bundles"
    build_bundle(BuildOptions(directory / "data", *trained_runs, root))
    (directory / "token").write_text(TOKEN)
    yield {"url": url, "bundles": root, "token": directory / "token", "dir": directory}
    urls.close()


@pytest.fixture
def live(backend):
    server = LiveServer(ServerConfig(bundles=backend["bundles"], store=backend["url"], address="127.0.0.1:0",
                                     metrics_port=0, watch_interval=0, admin_token_file=backend["token"]))
    with grpc.insecure_channel(server.target) as channel:
        yield server, pb_grpc.RecommenderStub(channel), pb_grpc.IngestStub(channel)
    server.stop()


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _event(event_id, user, item, **fields):
    return pb.FeedbackEvent(event_id=event_id, user_id=user, item_id=item, **fields)


def _personalized(response):
    return [i.item_id for i in response.items if i.slot == pb.SLOT_PERSONALIZED]


def _eventually(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_feedback_is_in_the_next_recommend_as_history_then_from_a_stored_ranking(live, backend):
    server, recommender, ingest = live
    before = recommender.Recommend(pb.RecommendRequest(user_id=5, n=10), timeout=10)
    kept = recommender.Recommend(pb.RecommendRequest(user_id=5, n=10), timeout=10)
    assert kept.timings.cached and kept.items == before.items   # the same request again: the answer kept
    watched = _personalized(before)[:2]
    loved = [_event(f"w5-{i}", 5, i, rating=5) for i in watched]   # as a request's recent items count: liked
    reply = ingest.AddFeedback(pb.AddFeedbackRequest(events=loved), metadata=AUTH, timeout=10)
    assert (reply.accepted, reply.duplicates, list(reply.rejected)) == (2, 0, [])
    after = recommender.Recommend(pb.RecommendRequest(user_id=5, n=10), timeout=10)
    assert after.known_user and not after.timings.cached and not set(watched) & {i.item_id for i in after.items}
    # as a request bringing those items as recent ones is answered by the bundle alone
    expected = Pipeline(load_bundle(backend["bundles"])).recommend(RecommendInput(user_id=5, n=10, recent=watched))
    assert [i.item_id for i in after.items] == expected.items.tolist()
    # the ranking computed on the write path then answers it, with the same items
    assert _eventually(lambda: recommender.Recommend(pb.RecommendRequest(user_id=5, n=10)).timings.precomputed)
    stored = recommender.Recommend(pb.RecommendRequest(user_id=5, n=10), timeout=10)
    assert [i.item_id for i in stored.items] == expected.items.tolist()
    # redelivery changes nothing
    again = ingest.AddFeedback(pb.AddFeedbackRequest(events=loved), metadata=AUTH, timeout=10)
    assert (again.accepted, again.duplicates) == (0, 2)


def test_a_user_created_by_feedback_gets_personalized_recommendations(live):
    server, recommender, ingest = live
    user, liked = 900_001, [50, 181, 172]   # Star Wars, Return of the Jedi, The Empire Strikes Back
    cold = recommender.Recommend(pb.RecommendRequest(user_id=user, n=10, explain=True), timeout=10)
    assert not cold.known_user and all(not i.channels for i in cold.items)
    kept = recommender.Recommend(pb.RecommendRequest(user_id=user, n=10, explain=True), timeout=10)
    assert kept.timings.cached and kept.items == cold.items   # a new user without events: kept
    reply = ingest.AddFeedback(pb.AddFeedbackRequest(events=[_event(f"n-{i}", user, i, rating=5) for i in liked]),
                               metadata=AUTH, timeout=10)
    assert reply.accepted == 3
    warm = recommender.Recommend(pb.RecommendRequest(user_id=user, n=10, explain=True), timeout=10)
    personal = [i for i in warm.items if i.slot == pb.SLOT_PERSONALIZED]
    assert warm.known_user and len(personal) == 5 and all(i.channels for i in personal)
    assert not set(liked) & {i.item_id for i in warm.items}


def test_a_new_item_is_served_in_the_new_slot_and_through_filters(live):
    server, recommender, ingest = live
    for _ in range(2):   # an answer kept from before the catalogue changed is not given after
        recommender.Recommend(pb.RecommendRequest(user_id=1, n=10, explain=True), timeout=10)
    reply = ingest.UpsertItems(pb.UpsertItemsRequest(items=[
        pb.Movie(item_id=77_001, title="Brand New Documentary (2026)", year=2026, genres=["Documentary"],
                 plot="A film about films."),
        pb.Movie(item_id=77_002, title="", year=2026)]), metadata=AUTH, timeout=10)
    assert (reply.inserted, [r.index for r in reply.rejected]) == (1, [1])
    response = recommender.Recommend(pb.RecommendRequest(user_id=1, n=10, explain=True), timeout=10)
    new = [i for i in response.items if i.slot == pb.SLOT_NEW]
    assert new[0].item_id == 77_001 and "added to the catalogue" in new[0].reason
    assert new[0].title == "Brand New Documentary (2026)"
    documentaries = recommender.Recommend(pb.RecommendRequest(
        user_id=1, n=10, filters=pb.Filters(include_genres=["Documentary"])), timeout=10)
    assert 77_001 in {i.item_id for i in documentaries.items}
    no_documentaries = recommender.Recommend(pb.RecommendRequest(
        user_id=1, n=10, filters=pb.Filters(exclude_genres=["Documentary"])), timeout=10)
    assert 77_001 not in {i.item_id for i in no_documentaries.items}
    # feedback on it makes it seen
    ingest.AddFeedback(pb.AddFeedbackRequest(events=[_event("seen-new", 1, 77_001, kind=pb.EVENT_KIND_WATCH)]),
                       metadata=AUTH, timeout=10)
    assert 77_001 not in {i.item_id for i in recommender.Recommend(pb.RecommendRequest(user_id=1, n=10)).items}


def test_a_new_users_side_features_come_from_the_store(live):
    server, recommender, ingest = live
    reply = ingest.UpsertUsers(pb.UpsertUsersRequest(users=[
        pb.User(user_id=900_100, side_features=pb.SideFeatures(gender=pb.GENDER_FEMALE, age=30)),
        pb.User(user_id=900_101, side_features=pb.SideFeatures(age=400))]), metadata=AUTH, timeout=10)
    assert reply.inserted == 1 and [r.index for r in reply.rejected] == [1]
    stored = recommender.Recommend(pb.RecommendRequest(user_id=900_100, n=10), timeout=10)
    given = recommender.Recommend(pb.RecommendRequest(
        user_id=0, n=10, side_features=pb.SideFeatures(gender=pb.GENDER_FEMALE, age=30)), timeout=10)
    assert [i.item_id for i in stored.items] == [i.item_id for i in given.items]


def test_ingest_calls_are_admin_calls_and_bad_batches_are_refused(live):
    server, recommender, ingest = live
    event = pb.AddFeedbackRequest(events=[_event("auth", 1, 1, rating=3)])
    for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                           ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED)):
        for call, request in ((ingest.AddFeedback, event), (ingest.UpsertItems, pb.UpsertItemsRequest()),
                              (ingest.UpsertUsers, pb.UpsertUsersRequest())):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, metadata=metadata, timeout=10)
            assert refused.value.code() == code
    with pytest.raises(grpc.RpcError) as too_many:
        ingest.AddFeedback(pb.AddFeedbackRequest(events=[_event(f"x{i}", 1, 1, rating=3) for i in range(1001)]),
                           metadata=AUTH, timeout=10)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_every_worker_sees_feedback(backend, tmp_path):
    """Two worker processes on one port: after an ack from one, every new connection, whichever
    worker takes it, no longer gets the items."""
    process, target = spawn_server(backend["bundles"], tmp_path / "server.log", workers=2, metrics_port=0,
                                   extra=("--store", backend["url"], "--admin-token-file", str(backend["token"])))
    try:
        with grpc.insecure_channel(target) as channel:
            first = pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id=9, n=10), timeout=10)
            watched = _personalized(first)[:3]
            reply = pb_grpc.IngestStub(channel).AddFeedback(pb.AddFeedbackRequest(events=[
                _event(f"workers-{i}", 9, i, rating=4) for i in watched]), metadata=AUTH, timeout=10)
            assert reply.accepted == 3
        acked = time.monotonic()
        leaks = 0
        time.sleep(0.5)   # a few feed intervals
        for _ in range(40):   # new connections spread over the workers
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                call = pb_grpc.RecommenderStub(channel).Recommend.with_call(
                    pb.RecommendRequest(user_id=9, n=10), timeout=10)
                leaks += bool(set(watched) & {i.item_id for i in call[0].items})
        assert leaks == 0, f"{leaks} of 40 replies after {time.monotonic() - acked:.1f}s still held the items"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    log = (tmp_path / "server.log").read_text()
    assert log.count("serving bundle") >= 2   # both workers served


def test_kill_9_during_a_stream_of_feedback_loses_no_acked_event(backend, tmp_path):
    """A client sends batches of new events; the server is killed with SIGKILL midway and
    restarted. Every acknowledged event is in the store; the batch in flight, sent again, is
    acknowledged too (duplicates where it was committed), and then the store holds exactly the
    acknowledged events. The restarted server serves them as the user's history."""
    store = EventStore(backend["url"])
    start = store.count("feedback")
    extra = ("--store", backend["url"], "--admin-token-file", str(backend["token"]))
    process, target = spawn_server(backend["bundles"], tmp_path / "server.log", extra=extra)
    port = int(target.rsplit(":", 1)[1])
    acked, in_flight, stop = [], [], threading.Event()
    items = np.arange(1, 1683)

    def stream():
        batch_number = 0
        while not stop.is_set():
            batch = [_event(f"kill9-{batch_number}-{j}", 20_000 + batch_number, int(items[(batch_number * 7 + j) % 1682]),
                            rating=3) for j in range(20)]
            in_flight[:] = batch
            try:
                with grpc.insecure_channel(target) as channel:
                    reply = pb_grpc.IngestStub(channel).AddFeedback(pb.AddFeedbackRequest(events=batch),
                                                                    metadata=AUTH, timeout=5)
                assert reply.accepted + reply.duplicates == len(batch)
                acked.extend(e.event_id for e in batch)
                in_flight.clear()
                batch_number += 1
            except grpc.RpcError:
                return   # the server is gone: the batch in flight is unacknowledged

    thread = threading.Thread(target=stream)
    thread.start()
    assert _eventually(lambda: len(acked) >= 200, timeout=60)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    thread.join(timeout=30)
    stop.set()
    stored = {row[0] for row in _event_ids(store)}
    assert set(acked) <= stored, "an acknowledged event is missing after kill -9"
    assert len(stored) - len(acked) in (0, len(in_flight))   # the unacknowledged batch: all or nothing
    process, target = spawn_server(backend["bundles"], tmp_path / "server.log", extra=extra, port=port)
    try:
        with grpc.insecure_channel(target) as channel:
            if in_flight:
                reply = pb_grpc.IngestStub(channel).AddFeedback(pb.AddFeedbackRequest(events=in_flight),
                                                                metadata=AUTH, timeout=10)
                assert reply.accepted + reply.duplicates == len(in_flight)
                acked.extend(e.event_id for e in in_flight)
            assert store.count("feedback") - start == len(acked) == len(set(acked))
            # the restarted server replays the events after the bundle's snapshot
            user = 20_000
            response = pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id=user, n=10), timeout=10)
            assert response.known_user
            seen = {int(items[j % 1682]) for j in range(20)}
            assert not seen & {i.item_id for i in response.items}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        store.close()


def _event_ids(store: EventStore) -> list:
    with store.db.transaction(write=False) as tx:
        return tx.rows("SELECT event_id FROM feedback WHERE event_id LIKE 'kill9-%'")


def test_data_imports_into_the_store_and_build_reads_a_snapshot_of_it(store_url, trained_runs, tmp_path):
    from typer.testing import CliRunner

    from movierec.cli import app

    runner = CliRunner()
    data = tmp_path / "data"
    for added in ("100,000 events", "0 events"):   # the second import adds nothing
        result = runner.invoke(app, ["data", "--source", str(ML100K), "--out", str(data), "--store", store_url])
        assert result.exit_code == 0 and f"added {added}" in result.output, result.output
    store = EventStore(store_url)
    store.add_feedback([Event(f"cli-{i}", 1, i, "rating", 4, NOW) for i in (1000, 1001, 1002)])
    result = runner.invoke(app, ["build", "--from-store", "--store", store_url, "--data", str(data),
                                 "--sasrec-run", str(trained_runs[0]), "--ncf-run", str(trained_runs[1]),
                                 "--bundles", str(tmp_path / "bundles")])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "bundles")
    assert bundle.manifest["snapshot"]["seq"] == store.positions()[0]
    assert load_dataset(data).manifest["counts"]["ratings"] == 100_003
    assert {1000, 1001, 1002} <= set(bundle.item_raw_ids()[bundle.histories.of(bundle.user_id(1))].tolist())
    # runs record the catalogue they were trained on: a store grown by a new user needs a new NCF
    # run (a table row per user); SASRec, whose users are their histories, needs only the same items
    import json
    import shutil

    runs = [shutil.copytree(run, tmp_path / run.name) for run in trained_runs]
    for run in runs:
        (run / "dataset.json").write_text(json.dumps(load_dataset(data).signature()))
    store.add_feedback([Event("cli-new-user", 950_000, 1, "rating", 4, NOW)])
    grown = runner.invoke(app, ["build", "--from-store", "--store", store_url, "--data", str(data),
                                "--sasrec-run", str(runs[0]), "--ncf-run", str(runs[1]),
                                "--bundles", str(tmp_path / "bundles")])
    assert grown.exit_code == 2 and f"the NCF run {runs[1]} was trained on another catalogue" in grown.output, \
        grown.output
    assert load_bundle(tmp_path / "bundles").version == bundle.version
    as_of = runner.invoke(app, ["data", "--from-store", "--store", store_url, "--out", str(tmp_path / "old"),
                                "--as-of", "2000-01-01"])
    assert as_of.exit_code == 2 and "holds no event stored by then" in as_of.output, as_of.output
    store.close()


def test_a_disliked_item_is_seen_but_not_taken_as_liked(live):
    server, recommender, ingest = live
    ingest.AddFeedback(pb.AddFeedbackRequest(events=[_event("dislike-7", 7, 50, kind=pb.EVENT_KIND_DISLIKE),
                                                     _event("like-7", 7, 181, kind=pb.EVENT_KIND_LIKE)]),
                       metadata=AUTH, timeout=10)
    pipeline = server.running.holder.served.pipeline
    context = pipeline.context_of(7)
    bundle = pipeline.bundle
    assert bundle.item_raw_ids()[context.sequence[-2:]].tolist() == [50, 181]
    assert context.sequence_ratings[-2:].tolist() == [1, 5]
    assert not {50, 181} & {i.item_id for i in recommender.Recommend(pb.RecommendRequest(user_id=7, n=50)).items}


def test_a_bundle_whose_store_is_not_here_is_served_without_one(backend, tmp_path, caplog):
    import json
    import shutil

    from movierec.bundle.layout import current_version

    root = tmp_path / "bundles"
    shutil.copytree(backend["bundles"], root, symlinks=True)
    manifest_path = current_version(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if not manifest["snapshot"]["store"].startswith("postgres"):
        manifest["snapshot"]["store"] = str(tmp_path / "elsewhere" / "store.db")
        manifest_path.write_text(json.dumps(manifest))   # the manifest is not among the checksummed files
    from movierec.server.app import store_url

    config = ServerConfig(bundles=root, address="127.0.0.1:0", metrics_port=0)
    if manifest["snapshot"]["store"].startswith("postgres"):
        assert store_url(config) == manifest["snapshot"]["store"]
        return
    assert store_url(config) is None and "is not here" in caplog.text
    assert not (tmp_path / "elsewhere").exists()
