import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from movierec.blend.lists import new_items, popular_items
from movierec.bundle.builder import FAIL_STAGES, BuildOptions, build_bundle
from movierec.bundle.layout import BundleError, current_version
from movierec.bundle.loader import load_bundle
from movierec.cli import app
from movierec.errors import ConfigError
from movierec.recall.index import IndexConfig
from movierec.recall.index.faiss import FaissIndex, IndexFileError

runner = CliRunner()


@pytest.fixture
def private_root(bundle_root, tmp_path):
    """A copy of the session's bundle root that a test may damage."""
    root = tmp_path / "bundles"
    shutil.copytree(bundle_root, root, symlinks=True)
    return root


def test_bundle_loads_and_verifies(bundle_root, ml100k_dataset):
    bundle = load_bundle(bundle_root)
    manifest = bundle.manifest
    assert bundle.path == current_version(bundle_root)
    assert manifest["counts"] == {"users": 943, "items": 1682, "interactions": 100000}
    channels = {c["name"]: c for c in manifest["recall"]["channels"]}
    assert list(channels) == ["sasrec", "ncf", "poster", "item2item"]
    assert [c["quota"] for c in channels.values()] == [200, 50, 20, 30]
    assert (channels["sasrec"]["dim"], channels["ncf"]["dim"], channels["poster"]["dim"]) == (16, 32, 12)
    assert channels["poster"]["source"]["items_with_poster"] == 841 and channels["poster"]["source"]["input_dim"] == 12
    assert channels["item2item"]["params"] == {"neighbours": 50, "seeds": 5}
    assert manifest["rank"] == {"name": "recall", "params": {"channel": "sasrec"}, "files": []}
    assert manifest["index"] == {"backend": "faiss", "factory": "Flat", "search": {}, "device": "cpu"}
    listed = [name for c in channels.values() for name in c["files"]] + manifest["rank"]["files"]
    assert set(listed) <= set(manifest["checksums"]) and all(n.startswith(("recall.", "rank.")) for n in listed)
    files = {p.name for p in bundle.path.iterdir()} - {"manifest.json"}
    assert set(manifest["checksums"]) == files
    assert manifest["dataset"]["ratings_file"] is not None
    assert bundle.item_ids([1, 1682, 99999]).tolist() == [1, 1682, 0]
    assert bundle.user_id(943) == 943 and bundle.user_id(5000) == 0


@pytest.mark.parametrize("damage", ["change", "remove", "add"])
def test_damaged_bundle_is_refused(private_root, damage):
    path = current_version(private_root)
    if damage == "change":
        with open(path / "recall.ncf.items.index", "r+b") as handle:
            handle.seek(100)
            handle.write(b"\x00\x01\x02")
        message = "recall.ncf.items.index does not match its checksum"
    elif damage == "remove":
        (path / "popular.npy").unlink()
        message = "popular.npy is missing"
    else:
        (path / "intruder.npy").write_bytes(b"x")
        message = "files not in the manifest: intruder.npy"
    with pytest.raises(BundleError, match=message):
        load_bundle(private_root)


def test_faiss_equals_brute_force_top_k():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    ids = np.arange(1, 501)
    index = FaissIndex.build(vectors, ids, IndexConfig())
    scores, found = index.search(queries, 10)
    brute = queries @ vectors.T
    expected = np.argsort(-brute, axis=1)[:, :10] + 1
    assert np.array_equal(found, expected)
    assert np.allclose(scores, np.take_along_axis(brute, expected - 1, axis=1), atol=1e-4)
    # approximate indexes find most of the exact top-10
    for factory, search in (("IVF16,Flat", "nprobe=16"), ("HNSW16", "efSearch=128")):
        config = IndexConfig.parse(factory, search)
        approx = FaissIndex.build(vectors, ids, config).search(queries, 10)[1]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, expected)])
        assert overlap > 0.9, config


def test_index_round_trip_and_bad_specs(tmp_path):
    vectors = np.eye(4, dtype=np.float32)
    index = FaissIndex.build(vectors, np.array([1, 2, 3, 4]), IndexConfig())
    index.save(tmp_path / "i.faiss")
    loaded = FaissIndex.load(tmp_path / "i.faiss", IndexConfig())
    assert loaded.search(vectors[2], 1)[1][0, 0] == 3
    (tmp_path / "bad.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match="unreadable FAISS index"):
        FaissIndex.load(tmp_path / "bad.faiss", IndexConfig())
    # search parameters come from the manifest's config, set again whenever an index is opened
    import faiss

    FaissIndex.build(vectors, np.array([1, 2, 3, 4]), IndexConfig(factory="IVF2,Flat")).save(tmp_path / "ivf.faiss")
    opened = FaissIndex.load(tmp_path / "ivf.faiss", IndexConfig.parse("IVF2,Flat", "nprobe=2"))
    assert faiss.extract_index_ivf(opened.index).nprobe == 2
    for factory, search, message in (("annoy", "", "bad FAISS index string"), ("Flat", "nprobe=4", "no search parameter"),
                                     ("HNSW16", "nprobe=4", "no search parameter"), ("Flat", "nprobe", "name=positive"),
                                     ("Flat", "efSearch=-1", "name=positive")):
        with pytest.raises(ConfigError, match=message):
            FaissIndex.check(IndexConfig.parse(factory, search))
    with pytest.raises(ConfigError, match="Number of training points"):
        FaissIndex.build(vectors, np.array([1, 2, 3, 4]), IndexConfig(factory="IVF16,Flat"))
    assert str(IndexConfig.parse("IVF64,Flat", "nprobe=8")) == "IVF64,Flat (nprobe=8)"


def test_seen_and_excluded_items_never_come_out_of_recall(bundle_root):
    bundle = load_bundle(bundle_root)
    recaller = bundle.recaller
    for user in (1, 13, 405, 943):
        history = bundle.histories.of(user)
        recent = np.array([50, 181])
        exclude = np.array([100, 258])
        merged, results = recaller.recall(bundle.context(user, recent=recent, exclude=exclude))
        blocked = np.concatenate([history, recent, exclude])
        assert not np.isin(merged.items, blocked).any()
        for result in results:
            assert result is not None and not np.isin(result.items, blocked).any()
        assert len(np.unique(merged.items)) == len(merged.items)
        assert len(merged.items) == sum(recaller.quotas.values())
        assert merged.proposed.any(axis=1).all()
        assert merged.channels == recaller.names == ("sasrec", "ncf", "poster", "item2item")
        assert all(len(result.items) for result in results)


def test_new_user_with_and_without_recent_items(bundle_root):
    bundle = load_bundle(bundle_root)
    features = np.zeros(4, dtype=np.int64)
    merged, results = bundle.recaller.recall(bundle.context(0, features))
    assert len(merged.items) == 0 and all(r is None or len(r.items) == 0 for r in results)
    merged, results = bundle.recaller.recall(bundle.context(0, features, recent=np.array([50, 172, 181])))
    found = {name for name, result in zip(bundle.recaller.names, results) if result is not None and len(result.items)}
    assert found >= {"sasrec", "item2item"} and "ncf" not in found
    assert len(merged.items) > 0 and not np.isin(merged.items, [50, 172, 181]).any()


def test_recent_items_recompute_the_sasrec_state(bundle_root):
    bundle = load_bundle(bundle_root)
    from movierec.recall.channels.sasrec import context_query

    users = bundle.recaller.channels[bundle.recaller.names.index("sasrec")].users
    stored = context_query(users, bundle.context(7))
    # the state stored at build time (Paddle) equals the serving path's numpy forward pass
    assert np.allclose(stored, users.inference.user_vector(bundle.histories.of(7)), atol=1e-4)
    updated = context_query(users, bundle.context(7, recent=np.array([1, 2, 3])))
    assert not np.allclose(stored, updated, atol=1e-4)


def test_failed_build_keeps_the_previous_current(private_root, ml100k_dataset, trained_runs):
    before = current_version(private_root)
    options = BuildOptions(ml100k_dataset.path, trained_runs[0], trained_runs[1], private_root)
    for stage in FAIL_STAGES:
        with pytest.raises(BundleError, match="simulated"):
            build_bundle(options, fail_after=stage)
        assert current_version(private_root) == before
        assert not list(private_root.glob(".tmp-*"))
    load_bundle(private_root)


def test_leftovers_of_a_killed_build_are_cleaned_and_old_versions_pruned(private_root, ml100k_dataset, trained_runs):
    (private_root / ".tmp-vkilled").mkdir()
    (private_root / ".tmp-vkilled" / "half.npy").write_bytes(b"x")
    options = BuildOptions(ml100k_dataset.path, trained_runs[0], trained_runs[1], private_root, keep=2)
    first = build_bundle(options)
    assert first.manifest["cleaned_leftovers"] == [".tmp-vkilled"]
    second = build_bundle(BuildOptions(ml100k_dataset.path, trained_runs[0], trained_runs[1], private_root,
                                       keep=2, precompute_rankings=False))
    assert "rankings.npz" not in second.manifest["checksums"]
    assert load_bundle(private_root).precomputed is None
    versions = sorted(p.name for p in private_root.iterdir() if p.name.startswith("v"))
    assert versions == sorted([first.version, second.version])
    assert os.readlink(private_root / "current") == second.version


def test_popular_and_new_lists():
    items = np.array([3, 3, 3, 1, 2, 2])
    stamps = np.array([0, 0, 0, 10, 20, 20]) * 86_400
    assert popular_items(items, stamps, 4, 0).tolist() == [3, 2, 1]
    # with a 1-day half-life the old item 3 decays below the recent ones
    assert popular_items(items, stamps, 4, 1.0).tolist() == [2, 1, 3]


def test_new_list_orders_by_year_then_first_rating(ml100k_dataset):
    items = ml100k_dataset.ratings.item.to_numpy()
    stamps = ml100k_dataset.ratings.timestamp.to_numpy()
    order = new_items(ml100k_dataset.items, items, stamps)
    years = ml100k_dataset.items.set_index("item").year.reindex(order).to_numpy()
    assert len(order) == ml100k_dataset.num_items and (np.diff(years) <= 0).all()


def test_build_and_recall_commands(ml100k_dataset, trained_runs, tmp_path):
    root = tmp_path / "b"
    result = runner.invoke(app, ["build", "--data", str(ml100k_dataset.path), "--sasrec-run", str(trained_runs[0]),
                                 "--ncf-run", str(trained_runs[1]), "--bundles", str(root), "--index", "HNSW16",
                                 "--index-search", "efSearch=32"])
    assert result.exit_code == 0, result.output
    assert "is now current" in result.output and "index HNSW16 on cpu" in result.output
    assert load_bundle(root).manifest["index"]["search"] == {"efSearch": 32}
    result = runner.invoke(app, ["recall", "--bundles", str(root), "--user", "1", "--recent", "50,99999", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "Star Wars (1977)" not in result.output  # movie 50 was just watched
    assert "1 unknown movie id(s)" in result.output and "merged: 300 candidates" in result.output
    result = runner.invoke(app, ["build", "--data", str(ml100k_dataset.path), "--sasrec-run", str(tmp_path / "none"),
                                 "--ncf-run", str(trained_runs[1]), "--bundles", str(root)])
    assert result.exit_code == 2 and "no SASRec run" in result.output
    result = runner.invoke(app, ["build", "--data", str(ml100k_dataset.path), "--index", "annoy",
                                 "--bundles", str(root)])
    assert result.exit_code == 2 and "bad FAISS index string 'annoy'" in result.output
    result = runner.invoke(app, ["recall", "--bundles", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "bundle not found" in result.output


def test_precomputed_rankings_answer_exactly_as_online_recall_and_rank(bundle_root):
    from movierec.server.pipeline import Pipeline, RecommendInput

    bundle = load_bundle(bundle_root)
    assert bundle.precomputed.num_users == len(bundle.users) == 943
    served, online = Pipeline(bundle), Pipeline(bundle, use_precomputed=False)
    requests = [{"n": 10}, {"n": 37, "explain": True}, {"n": 5, "shares": {"personalized": 1.0}}]
    for raw_user in bundle.users.raw_id.to_numpy()[::47]:
        for kwargs in requests:
            stored = served.recommend(RecommendInput(user_id=int(raw_user), **kwargs))
            computed = online.recommend(RecommendInput(user_id=int(raw_user), **kwargs))
            assert stored.precomputed and not computed.precomputed
            np.testing.assert_array_equal(stored.items, computed.items)
            assert stored.slots == computed.slots and stored.channels == computed.channels
            np.testing.assert_allclose(stored.scores, computed.scores, rtol=1e-5)
            np.testing.assert_allclose(stored.rank_scores, computed.rank_scores, rtol=1e-5)
            assert "personalized" in stored.slots and not np.isnan(stored.rank_scores).all()
    # context (recent items, exclusions, filters, which reach recall) and new users go through recall and rank online
    for kwargs in ({"user_id": 1, "recent": [50]}, {"user_id": 1, "exclude": [50]}, {"user_id": 0, "recent": [50]},
                   {"user_id": 1, "include_genres": ["Drama"]}, {"user_id": 1, "min_year": 1990}):
        assert not served.recommend(RecommendInput(**kwargs)).precomputed
