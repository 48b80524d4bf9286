import json

import pytest

from movierec.dataset.readers import DataError, read_release
from movierec.dataset.sequences import chronological, leave_last_out
from movierec.dataset.store import load_dataset, write_dataset


@pytest.fixture
def tiny(ml1m_dir, tmp_path):
    release = read_release(ml1m_dir)
    return load_dataset(write_dataset(release, tmp_path / "out", "test", release.files))


def test_ids_are_contiguous_with_zero_for_padding(tiny):
    assert sorted(tiny.users.user) == [1, 2, 3]
    # movie 4 has no ratings and is left out of the catalogue
    assert sorted(tiny.items.item) == [1, 2, 3]
    assert tiny.manifest["counts"]["movies_without_ratings"] == 1
    assert tiny.ratings.user.min() == 1 and tiny.ratings.item.min() == 1
    assert list(tiny.item_raw_ids()) == [0, 1, 2, 3]
    assert list(tiny.item_ids([3, 1, 999])) == [3, 1, 0]


def test_side_features_and_vocabularies(tiny):
    users = tiny.users.set_index("raw_id")
    assert users.loc[1, "gender"] == "F" and users.loc[1, "age"] == 1
    assert users.loc[2, "zip_prefix"] == "700"
    vocab = tiny.manifest["vocabularies"]
    assert vocab["gender"][users.loc[2, "gender_idx"] - 1] == "M"
    assert (tiny.users[["gender_idx", "age_idx", "occupation_idx", "zip_prefix_idx"]] >= 1).all().all()
    genres = tiny.encoder.genre_matrix(tiny.items.genres)
    assert genres.shape == (3, 18)
    assert genres[0].sum() == 3  # Toy Story: Animation, Children's, Comedy
    assert list(tiny.items.year) == [1995, 1995, 1993]


def test_manifest_records_sources_and_malformed_lines(tiny):
    manifest = tiny.manifest
    assert manifest["counts"]["malformed_lines"] == 2
    lines = [i["line"] for r in manifest["parse_reports"] for i in r["issues"]]
    assert sorted(lines) == [5, 8]


def test_changed_file_is_refused(tiny):
    (tiny.path / "items.parquet").write_bytes(b"tampered")
    with pytest.raises(DataError, match="items.parquet does not match its checksum"):
        load_dataset(tiny.path)


def test_not_a_dataset_and_other_format_versions(tiny, tmp_path):
    with pytest.raises(DataError, match="not a movierec dataset"):
        load_dataset(tmp_path)
    manifest = json.loads((tiny.path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tiny.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="format 99"):
        load_dataset(tiny.path)


def test_rewrite_is_atomic_and_leaves_no_temp_dirs(ml1m_dir, tmp_path):
    release = read_release(ml1m_dir)
    out = tmp_path / "datasets" / "out"
    write_dataset(release, out, "test", release.files)
    write_dataset(release, out, "test", release.files)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    load_dataset(out)


def test_chronological_order_breaks_ties_by_file_order(tiny):
    sequences = chronological(tiny.ratings, tiny.num_users)
    raw = tiny.item_raw_ids()
    # user 1: movie 3 at t=50, then movies 1 and 2 both at t=100 in file order
    assert list(raw[sequences.of(1)]) == [3, 1, 2]
    # user 3: t=7 (2), t=9 (1 then 3, file order); the line naming movie 9 was dropped
    assert list(raw[sequences.of(3)]) == [2, 1, 3]
    assert list(raw[sequences.of(2)]) == [1, 2]


def test_leave_last_out():
    from movierec.dataset.sequences import Sequences

    sequences = Sequences.from_lists([[], [5, 6, 7, 8], [1, 2], [3, 4, 9]])
    split = leave_last_out(sequences)
    assert list(split.train.of(1)) == [5, 6] and split.valid[1] == 7 and split.test[1] == 8
    assert list(split.train.of(2)) == [1, 2] and split.valid[2] == 0 and split.test[2] == 0
    assert list(split.train.of(3)) == [3] and split.valid[3] == 4 and split.test[3] == 9
    test_history = split.history("test")
    assert list(test_history.of(1)) == [5, 6, 7]
    assert list(test_history.of(2)) == [1, 2]
    assert list(test_history.of(3)) == [3, 4]
    assert split.history("valid") is split.train
