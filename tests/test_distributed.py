"""Data-parallel training with --nproc: two CPU processes (gloo) on a slice of ML-100K end with
the same parameters, only the first writes the run, its checkpoint loads, and a resume
continues with two processes again."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from movierec.dataset.store import load_dataset, write_dataset


@pytest.fixture(scope="module")
def slice_data(ml100k_dataset, tmp_path_factory):
    from dataclasses import replace

    from movierec.dataset.readers import read_release
    from conftest import ML100K

    release = read_release(ML100K)
    users = release.ratings.user_raw.unique()[:150]
    release = replace(release, ratings=release.ratings[release.ratings.user_raw.isin(users)].reset_index(drop=True))
    return write_dataset(release, tmp_path_factory.mktemp("slice") / "data", "slice of ML-100K", release.files)


def _train(data, run_dir, *extra):
    command = [sys.executable, "-m", "movierec.cli", "train", "sasrec", "--data", str(data), "--run-dir", str(run_dir),
               "--nproc", "2", "--maxlen", "20", "--hidden", "16", "--loss", "ce", "--eval-every", "1", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _digests(run_dir) -> list[str]:
    digests = []
    for log in sorted((run_dir / "launch-logs").glob("workerlog.*")):
        found = re.findall(r"parameters sha256 ([0-9a-f]{64})", log.read_text())
        assert found, log.read_text()[-2000:]
        digests.append(found[-1])
    return digests


def test_two_processes_train_the_same_weights_and_resume(slice_data, tmp_path):
    from movierec.models.sasrec.training import load_sasrec
    from movierec.training.checkpoints import RunDir

    run_dir = tmp_path / "run"
    result = _train(slice_data, run_dir, "--epochs", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first = _digests(run_dir)
    assert len(first) == 2 and first[0] == first[1]
    state = RunDir(run_dir).read_state()
    assert state.epoch == 2 and (run_dir / "metrics.json").is_file()
    load_sasrec(run_dir, load_dataset(slice_data).num_items, which="last")
    resumed = _train(slice_data, run_dir, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    second = _digests(run_dir)
    assert second[0] == second[1] and second[0] != first[0]
    assert RunDir(run_dir).read_state().epoch == 3


def test_bad_process_settings_are_clear_errors(slice_data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "movierec.cli", "train", "sasrec", "--data", str(slice_data),
                             "--run-dir", str(tmp_path / "r"), "--nnodes", "2"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--master" in result.stdout + result.stderr
