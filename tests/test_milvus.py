"""Milvus as the vector index (milvus-lite, the same protocol as a Milvus server): the same
top-k as FAISS Flat on the same vectors, with the history excluded and with a filter, both
ways of excluding (over-fetching, a filter expression); the bundle refuses a collection that
does not hold what it says; the alias follows the newest version and pruned versions' go."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.layout import BundleError
from movierec.bundle.loader import load_bundle
from movierec.recall.context import ItemMask

pytest.importorskip("pymilvus", reason="the Milvus back end needs pymilvus and milvus-lite (the test extra)")


@pytest.fixture(scope="module")
def milvus_root(ml100k_dataset, trained_runs, tmp_path_factory):
    directory = tmp_path_factory.mktemp("milvus")
    root = directory / "bundles"
    build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, index_store=str(directory / "milvus.db"),
                              keep=1, precompute_rankings=False))   # searches over milvus-lite: seconds per 1k
    return root


def _same_top_k(a, b, k=20):
    """Equal ids, except where scores tie at the cut."""
    assert a.items[:k - 1].tolist() == b.items[:k - 1].tolist() or np.allclose(a.scores, b.scores, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


@pytest.mark.parametrize("overfetch_limit", [10_000, 0])   # exclusion by over-fetching, then by expression
def test_milvus_returns_the_top_k_of_faiss_flat(milvus_root, bundle_root, monkeypatch, overfetch_limit):
    monkeypatch.setattr("movierec.recall.index.milvus.OVERFETCH_LIMIT", overfetch_limit)
    milvus, faiss = load_bundle(milvus_root, with_rankings=False), load_bundle(bundle_root, with_rankings=False)
    assert {f["index"]["backend"] for f in milvus.manifest["recall"]["channels"] if "index" in f} == {"milvus"}
    drama = np.zeros(milvus.num_items + 1, bool)
    drama[milvus.items.item.to_numpy()[milvus.items.genres.str.contains("Drama").to_numpy()]] = True
    for user in (1, 42, 900):
        for filters in (None, ItemMask(drama)):
            a, b = milvus.context(user, filters=filters), faiss.context(user, filters=filters)
            for left, right in zip(milvus.recaller.channels, faiss.recaller.channels):
                if not hasattr(left, "index"):
                    continue
                found, expected = left.retrieve(a, 20, a.allowed), right.retrieve(b, 20, b.allowed)
                if expected is None:
                    assert found is None
                    continue
                assert a.allowed.array[found.items].all()   # nothing excluded comes back
                _same_top_k(found, expected)


def test_a_collection_that_does_not_match_is_refused(milvus_root, ml100k_dataset, trained_runs, tmp_path):
    from movierec.bundle.layout import current_version
    from movierec.recall.index.milvus import client

    bundle = load_bundle(milvus_root, with_rankings=False)
    fragment = next(f for f in bundle.manifest["recall"]["channels"] if f["name"] == "sasrec")
    milvus = client(fragment["index"]["location"])
    assert "movierec_sasrec" in milvus.list_aliases(fragment["index"]["name"])["aliases"]
    milvus.delete(fragment["index"]["name"], ids=[1, 2, 3])
    milvus.flush(fragment["index"]["name"])
    with pytest.raises(BundleError, match="holds 1679 vectors"):
        load_bundle(milvus_root, with_rankings=False)
    old = current_version(milvus_root).name
    for _ in range(2):   # the first version is pruned once two newer ones stand; its collections go
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, milvus_root,
                                  index_store=fragment["index"]["location"], keep=1, precompute_rankings=False))
    assert not [name for name in milvus.list_collections() if old.replace("-", "_") in name]
    newest = load_bundle(milvus_root, with_rankings=False)
    name = next(f for f in newest.manifest["recall"]["channels"] if f["name"] == "sasrec")["index"]["name"]
    assert "movierec_sasrec" in milvus.list_aliases(name)["aliases"]
