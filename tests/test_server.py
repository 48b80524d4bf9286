import os
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from movierec.bundle.loader import load_bundle
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def bundle(served_root):
    return load_bundle(served_root)


def raw_history(bundle, raw_user):
    return set(bundle.item_raw_ids()[bundle.histories.of(bundle.user_id(raw_user))].tolist())


@pytest.mark.parametrize("n,sizes", [(1, (0, 0, 1)), (3, (1, 1, 1)), (10, (2, 3, 5)), (37, (7, 11, 19))])
def test_quotas_hold_without_duplicates_or_seen_items(stub, bundle, n, sizes):
    for user in (1, 42, 500):
        response = stub.Recommend(pb.RecommendRequest(user_id=user, n=n), timeout=10)
        assert response.known_user
        ids = [item.item_id for item in response.items]
        assert len(ids) == n and len(set(ids)) == n
        assert not set(ids) & raw_history(bundle, user)
        slots = [item.slot for item in response.items]
        assert (slots.count(pb.SLOT_POPULAR), slots.count(pb.SLOT_NEW), slots.count(pb.SLOT_PERSONALIZED)) == sizes
        assert all(item.title for item in response.items)
        assert response.timings.total_ms > 0


def test_new_and_unknown_users_are_answered(stub):
    for request in (pb.RecommendRequest(n=10), pb.RecommendRequest(user_id=987654, n=10),
                    pb.RecommendRequest(n=10, side_features=pb.SideFeatures(gender=pb.GENDER_FEMALE, age=30,
                                                                            occupation="writer"))):
        response = stub.Recommend(request, timeout=10)
        assert not response.known_user and len(response.items) == 10
        assert len({item.item_id for item in response.items}) == 10
    plain = stub.Recommend(pb.RecommendRequest(n=10), timeout=10)
    demographic = stub.Recommend(pb.RecommendRequest(n=10, side_features=pb.SideFeatures(
        gender=pb.GENDER_FEMALE, age=60)), timeout=10)
    personalized = lambda r: [i.item_id for i in r.items if i.slot == pb.SLOT_PERSONALIZED]
    assert personalized(plain) != personalized(demographic)


def test_recent_items_change_the_personalized_slot_and_are_not_returned(stub):
    before = stub.Recommend(pb.RecommendRequest(user_id=7, n=10), timeout=10)
    recent = [1, 50, 181, 99999]
    after = stub.Recommend(pb.RecommendRequest(user_id=7, n=10, recent_item_ids=recent, explain=True), timeout=10)
    personalized = lambda r: [i.item_id for i in r.items if i.slot == pb.SLOT_PERSONALIZED]
    assert personalized(before) != personalized(after)
    assert not {i.item_id for i in after.items} & set(recent)
    assert list(after.ignored_item_ids) == [99999]
    assert all(i.channels for i in after.items if i.slot == pb.SLOT_PERSONALIZED)
    assert all(0 < i.rank_score < 1 for i in after.items if i.slot == pb.SLOT_PERSONALIZED)
    cold = stub.Recommend(pb.RecommendRequest(n=10, recent_item_ids=[1, 50, 181]), timeout=10)
    assert not cold.known_user and not {i.item_id for i in cold.items} & {1, 50, 181}
    # without context a known user's list comes from the bundle's rankings; with it, online
    assert before.timings.precomputed and not after.timings.precomputed and not cold.timings.precomputed


def test_exclusions_filters_and_quota_override(stub, bundle):
    response = stub.Recommend(pb.RecommendRequest(user_id=3, n=20, exclude_item_ids=[50, 100],
                                                  filters=pb.Filters(include_genres=["Comedy"], min_year=1990)),
                              timeout=10)
    items = bundle.items.set_index("raw_id")
    assert len(response.items) == 20
    for item in response.items:
        assert item.item_id not in (50, 100)
        assert "Comedy" in items.loc[item.item_id, "genres"] and items.loc[item.item_id, "year"] >= 1990
    only_new = stub.Recommend(pb.RecommendRequest(user_id=3, n=5, quotas=pb.Quotas(new=1)), timeout=10)
    assert [i.slot for i in only_new.items] == [pb.SLOT_NEW] * 5


@pytest.mark.parametrize("request_kwargs,message", [
    (dict(n=201), "n must be between"),
    (dict(filters=pb.Filters(include_genres=["Space Opera"])), "unknown genre"),
    (dict(filters=pb.Filters(min_year=2000, max_year=1990)), "after max_year"),
    (dict(quotas=pb.Quotas()), "quota shares"),
    (dict(recent_item_ids=list(range(1, 1002))), "at most 1000"),
])
def test_bad_requests_are_invalid_argument(stub, request_kwargs, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.Recommend(pb.RecommendRequest(**request_kwargs), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_a_repeated_request_without_context_is_given_the_kept_answer(stub):
    request = pb.RecommendRequest(user_id=42, n=17, explain=True)
    first, again = stub.Recommend(request, timeout=10), stub.Recommend(request, timeout=10)
    assert not first.timings.cached and again.timings.cached and again.timings.precomputed
    assert again.items == first.items and again.bundle_version == first.bundle_version and again.known_user
    assert again.timings.total_ms == 0 < first.timings.total_ms
    # another n, other quotas, recent items or excluded items: answers of their own, never kept
    assert not stub.Recommend(pb.RecommendRequest(user_id=42, n=16), timeout=10).timings.cached
    assert not stub.Recommend(pb.RecommendRequest(user_id=42, n=17, explain=True, quotas=pb.Quotas(personalized=1)),
                              timeout=10).timings.cached
    for other in (pb.RecommendRequest(user_id=42, n=17, recent_item_ids=[1, 2]),
                  pb.RecommendRequest(user_id=42, n=17, exclude_item_ids=[1, 2])):
        assert not any(stub.Recommend(other, timeout=10).timings.cached for _ in range(2))
    # a filter is part of the key, its genres in any case and order
    comedy = stub.Recommend(pb.RecommendRequest(user_id=42, n=17, filters=pb.Filters(include_genres=["Comedy", "Drama"])),
                            timeout=10)
    again = stub.Recommend(pb.RecommendRequest(user_id=42, n=17, filters=pb.Filters(include_genres=["drama", "comedy"])),
                           timeout=10)
    assert not comedy.timings.cached and not comedy.timings.precomputed and again.timings.cached
    assert again.items == comedy.items != first.items
    assert not stub.Recommend(pb.RecommendRequest(user_id=42, n=17, filters=pb.Filters(include_genres=["Comedy"])),
                              timeout=10).timings.cached
    # a new user is known by side features: the same ones share an answer, whatever the id
    def new_user(user_id, age):
        side = pb.SideFeatures(gender=pb.GENDER_FEMALE, age=age)
        return stub.Recommend(pb.RecommendRequest(user_id=user_id, n=17, side_features=side), timeout=10)

    young, again, older = new_user(999_999, 19), new_user(999_998, 19), new_user(999_999, 61)
    assert not young.known_user and not young.timings.cached and again.timings.cached and again.items == young.items
    assert not older.timings.cached and older.items != young.items


def test_recommend_says_when_an_answer_was_kept_and_whether_it_was_precomputed(server):
    from typer.testing import CliRunner

    from movierec.cli import app

    def said(*args):
        result = CliRunner().invoke(app, ["recommend", "--target", server.target, "--n", "7", *args])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[-1]

    for args, precomputed in ((["--user", "77"], True), (["--user", "77", "--genres", "Comedy"], False),
                              (["--gender", "M", "--age", "33"], False)):
        first, again = said(*args), said(*args)
        assert first.startswith("server time: recall") and again.startswith("server time: none")
        assert ("precomputed" in first) == ("precomputed" in again) == precomputed


def test_kept_answers_stay_within_their_budget_the_oldest_going_first():
    from movierec.server.admin import AdminAuth
    from movierec.server.app import KEPT_ANSWER_OVERHEAD, Metrics, RecommenderService

    answer = pb.RecommendResponse(items=[pb.RecommendedItem(item_id=i, title="t" * 40) for i in range(10)])
    size = len(answer.SerializeToString()) + 2 + KEPT_ANSWER_OVERHEAD   # with the cached flag
    service = RecommenderService(None, Metrics(), AdminAuth(), answer_cache_mb=2.5 * size / 2**20)
    for user in range(1, 5):
        service._keep((user, 10, None, False), answer)
        assert service.kept_bytes <= service.answer_budget
    assert list(service.answers) == [(3, 10, None, False), (4, 10, None, False)]
    assert pb.RecommendResponse.FromString(service.answers[(4, 10, None, False)]).timings.cached
    service.answer_budget = size // 2   # an answer larger than the whole budget is not kept
    service._keep((5, 10, None, False), answer)
    assert (5, 10, None, False) not in service.answers


def test_health_is_serving_and_reflection_lists_the_service(server):
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "movierec.v1.Recommender"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                    timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"movierec.v1.Recommender", "grpc.health.v1.Health"} <= names


def test_reload_switches_version_with_no_failed_call(server, stub, served_root):
    first = stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=5)
    assert first.items == 1682 and first.users == 943 and first.index == "Flat"
    failures, versions, stop = [], set(), threading.Event()

    def load():
        with grpc.insecure_channel(server.target) as channel:
            client = pb_grpc.RecommenderStub(channel)
            while not stop.is_set():
                try:
                    versions.add(client.Recommend(pb.RecommendRequest(user_id=5, n=10), timeout=10).bundle_version)
                except grpc.RpcError as exc:
                    failures.append(exc.code())

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    switched = stub.ReloadBundle(pb.ReloadBundleRequest(version="v99999999-000000-second"), timeout=60)
    assert switched.version == "v99999999-000000-second"
    time.sleep(0.5)
    # the watcher follows `current` when it moves
    tmp = served_root / ".current.test"
    os.symlink(first.version, tmp)
    os.replace(tmp, served_root / "current")
    deadline = time.time() + 30
    while stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=5).version != first.version:
        assert time.time() < deadline, "watcher did not follow `current`"
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert versions == {first.version, "v99999999-000000-second"}


def test_reload_cannot_leave_the_bundle_root(stub):
    for version in ("../../etc", "/tmp", "v1/../../x"):
        with pytest.raises(grpc.RpcError) as info:
            stub.ReloadBundle(pb.ReloadBundleRequest(version=version), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.ReloadBundle(pb.ReloadBundleRequest(version="v00000000-missing"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_generated_stubs_are_not_stale():
    result = subprocess.run([sys.executable, "-m", "movierec.server.codegen", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serve_without_a_bundle_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "movierec.cli", "serve", "--bundles", str(tmp_path / "none"),
                             "--address", "127.0.0.1:0", "--metrics-port", "0"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "no `current` bundle" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_a_metrics_port_in_use_is_a_clear_error(served_root):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "movierec.cli", "serve", "--bundles", str(served_root),
                                 "--address", "127.0.0.1:0", "--metrics-port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_server_without_precomputed_rankings_answers_the_same(bundle_root):
    from movierec.server.app import ServerConfig

    from conftest import LiveServer

    servers = [LiveServer(ServerConfig(bundles=bundle_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0,
                                       use_precomputed=flag)) for flag in (True, False)]
    try:
        channels = [grpc.insecure_channel(s.target) for s in servers]
        stored, online = [pb_grpc.RecommenderStub(c) for c in channels]
        for user in (1, 7, 250, 943):
            request = pb.RecommendRequest(user_id=user, n=20, explain=True)
            a, b = stored.Recommend(request, timeout=10), online.Recommend(request, timeout=10)
            assert a.timings.precomputed and not b.timings.precomputed
            assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
            assert [list(i.channels) for i in a.items] == [list(i.channels) for i in b.items]
            assert [i.score for i in a.items] == pytest.approx([i.score for i in b.items], rel=1e-5)
        for channel in channels:
            channel.close()
    finally:
        for live in servers:
            live.stop()
