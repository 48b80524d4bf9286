"""Per-user rankings in Redis answer as the bundle's own rankings.npz does. The Redis server is
read from MOVIEREC_TEST_REDIS (default redis://127.0.0.1:6379/0); each run keeps its keys
under a prefix of its own and removes them; without a server the tests are skipped, saying why."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.layout import BundleError
from movierec.bundle.loader import load_bundle
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
