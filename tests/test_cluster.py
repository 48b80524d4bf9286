"""The users' SASRec states and per-user rankings computed on a cluster (Dask, Ray; local worker
processes here) equal the in-process build's, file for file."""

from __future__ import annotations

import pytest

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.errors import ConfigError


@pytest.mark.parametrize("cluster", ["dask:local:2", "ray:local:2"])
def test_a_cluster_build_equals_the_in_process_build(cluster, ml100k_dataset, trained_runs, bundle_root, tmp_path):
    pytest.importorskip(cluster.split(":")[0], reason=f"{cluster.split(':')[0]} is in the test extra")
    report = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", build_cluster=cluster))
    built, reference = report.manifest["checksums"], load_bundle(bundle_root).manifest["checksums"]
    assert set(built) == set(reference)
    assert {name for name in built if built[name] != reference[name]} <= {"manifest.json"}


@pytest.mark.parametrize("cluster", ["dask:local:2", "ray:local:2"])
def test_sasrec_states_over_several_shards_equal_the_in_process_ones(cluster, ml100k_dataset, trained_runs,
                                                                      monkeypatch):
    pytest.importorskip(cluster.split(":")[0], reason=f"{cluster.split(':')[0]} is in the test extra")
    import numpy as np

    from movierec.dataset.sequences import chronological
    from movierec.models.sasrec import states
    from movierec.models.sasrec.training import load_sasrec

    monkeypatch.setattr(states, "BATCH", 100)
    monkeypatch.setattr(states, "SHARD", 300)     # 944 rows: four shards of whole batches
    sequences = chronological(ml100k_dataset.ratings, ml100k_dataset.num_users)
    sequences = [sequences.of(user) for user in range(ml100k_dataset.num_users + 1)]
    model = load_sasrec(trained_runs[0], ml100k_dataset.num_items)
    np.testing.assert_array_equal(states.user_states(model, sequences, cluster), states.user_states(model, sequences))


def test_a_bad_cluster_is_a_clear_error(ml100k_dataset, trained_runs, tmp_path):
    with pytest.raises(ConfigError, match="--build-cluster"):
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", build_cluster="spark:x"))


def test_rankings_packed_a_block_at_a_time_equal_the_whole_table(bundle_root, monkeypatch):
    """The builder packs users' rankings into arrays a block at a time (a million users never sit
    in memory as objects); blocks of any size give the table the bundle holds."""
    import numpy as np

    from movierec.rank import precomputed

    table = load_bundle(bundle_root).precomputed
    users = [table.user(user) for user in range(1, table.num_users + 1)]
    slots = tuple(table.pools)
    for block in (1, 100, 4096):
        monkeypatch.setattr(precomputed, "PACK_BLOCK", block)
        blocks = precomputed.pack_blocks(table.channels, iter(users), slots, table.pool_size, table.pool_keep)
        packed = precomputed.join(list(blocks), table.channels, slots, table.pool_size, table.pool_keep)
        for name in ("indptr", "items", "scores", "proposed"):
            np.testing.assert_array_equal(getattr(packed, name), getattr(table, name))
        for slot in slots:
            for name in ("indptr", "items", "scores", "ranked"):
                np.testing.assert_array_equal(getattr(packed.pools[slot], name), getattr(table.pools[slot], name))
