"""Per-user rankings in Redis answer as the bundle's own rankings.npz does. The Redis server is
read from MOVIEREC_TEST_REDIS (default redis://127.0.0.1:6379/0); each run keeps its keys
under a prefix of its own and removes them; without a server the tests are skipped, saying why."""

from __future__ import annotations

import io
import json
import os
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.layout import BundleError
from movierec.bundle.loader import load_bundle
from movierec.rank import ranking_stores
from movierec.rank.precomputed import UserRanking
from movierec.rank.ranker import Ranked
from movierec.server.pipeline import Pipeline, RecommendInput

REDIS = os.environ.get("MOVIEREC_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url(monkeypatch):
    try:
        import redis

        client = redis.Redis.from_url(REDIS, socket_connect_timeout=3)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Redis server answers at {REDIS} ({exc}); start one or point MOVIEREC_TEST_REDIS at one")
    prefix = f"movierec-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("movierec.rank.ranking_stores.KEY_PREFIX", prefix)
    yield REDIS
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@st.composite
def user_rankings(draw) -> UserRanking:
    channels = tuple(draw(st.lists(st.sampled_from(["sasrec", "ncf", "item2item", "poster", "content", "two_tower",
                                                    "genre", "cold", "new_items"]), min_size=1, unique=True)))
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ranked = Ranked(channels, rng.integers(1, 2**31 - 1, n), rng.random(n, dtype=np.float32),
                    rng.random((n, len(channels))) < 0.5)
    pools = {slot: (rng.integers(1, 100_000, size), rng.random(size, dtype=np.float32)) if size is not None else None
             for slot, size in zip(("popular", "new"), draw(st.tuples(*[st.none() | st.integers(0, 30)] * 2)))}
    return UserRanking(ranked, pools, draw(st.integers(0, 500)), draw(st.integers(0, 500)))


def assert_same_ranking(a: UserRanking, b: UserRanking) -> None:
    assert a.ranked.channels == b.ranked.channels and (a.pool_size, a.pool_keep) == (b.pool_size, b.pool_keep)
    for x, y in ((a.ranked.items, b.ranked.items), (a.ranked.scores, b.ranked.scores),
                 (a.ranked.proposed, b.ranked.proposed)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert a.pools.keys() == b.pools.keys()
    for slot, order in a.pools.items():
        assert (order is None) == (b.pools[slot] is None)
        if order is not None:
            for x, y in zip(order, b.pools[slot]):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)


@settings(max_examples=200, deadline=None)
@given(ranking=user_rankings())
def test_a_ranking_payload_reads_back_as_written_and_packs_as_the_bundle_does(ranking):
    payload = ranking.to_bytes()
    assert_same_ranking(UserRanking.from_bytes(payload, ("popular", "new")), ranking)
    with pytest.raises(ValueError):
        UserRanking.from_bytes(payload + b"\0", ("popular", "new"))
    n, channels = len(ranking.ranked.items), len(ranking.ranked.channels)
    pooled = sum(len(order[0]) for order in ranking.pools.values() if order is not None)
    arrays = 8 * n + n * ((channels + 7) // 8) + 8 * pooled
    assert arrays < len(payload) <= arrays + 300   # 4 + 4 bytes an item, one bit a channel, a short header


def test_a_payload_written_as_an_npz_before_the_packed_layout_still_reads():
    ranking = UserRanking(Ranked(("sasrec", "item2item"), np.array([5, 3, 9]), np.array([0.9, 0.5, 0.1], np.float32),
                                 np.array([[True, False], [True, True], [False, True]])),
                          {"popular": (np.array([7, 2]), np.array([0.4, 0.3], np.float32)), "new": None}, 400, 200)
    buffer = io.BytesIO()
    np.savez(buffer, channels=np.array(["sasrec", "item2item"]), items=ranking.ranked.items,
             scores=ranking.ranked.scores, proposed=ranking.ranked.proposed, pool_size=np.array(400),
             pool_keep=np.array(200), slots=np.array(["popular"]), popular_items=ranking.pools["popular"][0],
             popular_scores=ranking.pools["popular"][1])
    assert_same_ranking(UserRanking.from_bytes(buffer.getvalue(), ("popular", "new")), ranking)


def test_rankings_in_redis_equal_the_bundles_own(redis_url, ml100k_dataset, trained_runs, bundle_root, tmp_path):
    root = tmp_path / "bundles"
    report = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, rankings_store=redis_url))
    assert report.manifest["rankings"]["store"] == "redis"
    assert "rankings.npz" not in report.manifest["checksums"]
    in_redis, in_bundle = load_bundle(root), load_bundle(bundle_root)
    assert in_redis.precomputed.num_users == in_bundle.precomputed.num_users == ml100k_dataset.num_users
    for user in range(1, ml100k_dataset.num_users + 1):
        a, b = in_redis.precomputed.user(user), in_bundle.precomputed.user(user)
        np.testing.assert_array_equal(a.ranked.items, b.ranked.items)
        np.testing.assert_array_equal(a.ranked.scores, b.ranked.scores)
        np.testing.assert_array_equal(a.ranked.proposed, b.ranked.proposed)
        for slot in ("popular", "new"):
            np.testing.assert_array_equal(a.pools[slot][0], b.pools[slot][0])
    served_redis, served_bundle = Pipeline(in_redis), Pipeline(in_bundle)
    for user in (1, 17, 943):
        got, want = (p.recommend(RecommendInput(user_id=user, n=20)) for p in (served_redis, served_bundle))
        assert got.precomputed and got.items.tolist() == want.items.tolist()


def test_a_ranking_store_that_does_not_match_is_refused_and_pruned_keys_go(redis_url, ml100k_dataset, trained_runs,
                                                                           tmp_path):
    import redis

    client = redis.Redis.from_url(redis_url)
    root = tmp_path / "bundles"
    first = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, rankings_store=redis_url, keep=1,
                                      precompute_rankings=True))
    prefix = first.manifest["rankings"]["prefix"]
    meta = json.loads(client.get(f"{prefix}:meta"))
    client.set(f"{prefix}:meta", json.dumps({**meta, "users": meta["users"] + 1}))
    with pytest.raises(BundleError, match="other rankings"):
        load_bundle(root)
    client.set(f"{prefix}:meta", json.dumps(meta))
    assert load_bundle(root).precomputed is not None
    for _ in range(2):   # the first version is pruned once two newer ones stand
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, rankings_store=redis_url, keep=1))
    assert not list(client.scan_iter(match=f"{prefix}:*"))


def payload_digest(table) -> str:
    """The meta's digest for a table: SHA-256 over each user's payload digest, in user order."""
    import hashlib

    digest = hashlib.sha256()
    for user in range(1, table.num_users + 1):
        digest.update(hashlib.sha256(table.user(user).to_bytes()).digest())
    return digest.hexdigest()


def test_a_cluster_build_s_workers_write_the_rankings_into_redis(redis_url, ml100k_dataset, trained_runs,
                                                                  bundle_root, tmp_path):
    pytest.importorskip("dask", reason="dask is in the test extra")
    report = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", rankings_store=redis_url,
                                       build_cluster="dask:local:2"))
    in_bundle = load_bundle(bundle_root).precomputed
    assert report.manifest["rankings"]["sha256"] == payload_digest(in_bundle)
    assert report.manifest["rankings"]["users"] == ml100k_dataset.num_users
    in_redis = load_bundle(tmp_path / "b").precomputed
    for user in (1, 250, 251, 943):   # either side of a shard's edge
        assert_same_ranking(in_redis.user(user), in_bundle.user(user))


def test_a_build_that_fails_after_writing_rankings_into_redis_leaves_no_keys(redis_url, ml100k_dataset,
                                                                              trained_runs, tmp_path):
    import redis

    with pytest.raises(BundleError, match="simulated"):
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", rankings_store=redis_url),
                     fail_after="rankings")
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{ranking_stores.KEY_PREFIX}:*"))
