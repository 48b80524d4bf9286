"""The per-user rankings computed on a cluster (Dask, Ray; local worker processes here) equal
the in-process build's, file for file."""

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


def test_a_bad_cluster_is_a_clear_error(ml100k_dataset, trained_runs, tmp_path):
    with pytest.raises(ConfigError, match="--build-cluster"):
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", build_cluster="spark:x"))
