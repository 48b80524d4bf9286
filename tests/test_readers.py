import zipfile

import pytest

from conftest import ML1M_MOVIES, ML1M_USERS, write_text
from movierec.dataset.readers import DataError, age_bucket, read_release, year_from_title


def test_ml1m_reader_parses_and_reports_malformed_lines(ml1m_dir):
    release = read_release(ml1m_dir)
    assert release.name == "ml-1m"
    ratings_report = release.reports[-1]
    assert ratings_report.lines == 10
    # line 5 has a non-integer rating, line 8 names movie 9 which movies.dat lacks
    assert ratings_report.malformed == 2
    assert sorted(i.line for i in ratings_report.issues) == [5, 8]
    assert ratings_report.parsed == 8 == len(release.ratings)
    assert release.movies.set_index("movie_raw").loc[3, "title"] == "Caf\xe9 au lait (1993)"
    assert release.movies.set_index("movie_raw").loc[1, "genres"] == "Animation|Children's|Comedy"
    assert release.users.set_index("user_raw").loc[2, "occupation"] == "self-employed"


def test_ml1m_reader_reports_field_count_and_range_errors(tmp_path):
    root = tmp_path / "bad"
    write_text(root / "users.dat", ML1M_USERS + "4::X::1::10::1\n")
    write_text(root / "movies.dat", ML1M_MOVIES)
    write_text(root / "ratings.dat", "1::1::5::1\n1::2::9::2\n1::3\n\n2::1::4::3\n")
    release = read_release(root)
    users_report, _, ratings_report = release.reports
    assert users_report.malformed == 1 and users_report.issues[0].line == 4
    reasons = {i.line: i.reason for i in ratings_report.issues}
    assert set(reasons) == {2, 3}
    assert "outside 1..5" in reasons[2] and "expected 4 fields" in reasons[3]
    assert len(release.ratings) == 2


def test_reads_the_official_zip_layout(tmp_path, ml1m_dir):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/users.dat", ML1M_USERS.encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", ML1M_MOVIES.encode("latin-1"))
        zf.writestr("ml-1m/ratings.dat", b"1::1::5::100\n2::2::3::5\n")
    release = read_release(archive)
    assert len(release.ratings) == 2 and release.files["ratings"] == "ratings.dat"


def test_falls_back_to_the_timestamped_partial_ratings(tmp_path):
    root = tmp_path / "ml-1m"
    write_text(root / "users.dat", ML1M_USERS, gz=True)
    write_text(root / "movies.dat", ML1M_MOVIES, gz=True)
    write_text(root / "ratings_ts_partial.dat", "1::1::5::100\n", gz=True)
    assert read_release(root).files["ratings"] == "ratings_ts_partial.dat.gz"


def test_ml100k_reader(tmp_path):
    root = tmp_path / "ml-100k"
    flags = "|".join(["0"] * 19)
    write_text(root / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    write_text(root / "u.item", f"1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1{'|0' * 13}\n"
                                f"2|No Year|01-Jan-1997||url|{flags}\n")
    write_text(root / "u.data", "1\t1\t5\t881250949\n2\t2\t3\t881250950\n2\t1\t4\n", gz=True)
    release = read_release(root)
    assert release.name == "ml-100k"
    assert release.reports[-1].malformed == 1 and release.reports[-1].issues[0].line == 3
    movies = release.movies.set_index("movie_raw")
    assert movies.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert movies.loc[2, "year"] == 1997  # from the release date when the title has none
    assert list(release.users.age) == [18, 50]


def test_empty_and_wrong_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_release(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MovieLens release"):
        read_release(tmp_path / "empty")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="neither a directory nor a zip"):
        read_release(junk)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    root = tmp_path / "ml-1m"
    write_text(root / "users.dat", ML1M_USERS)
    write_text(root / "movies.dat", ML1M_MOVIES)
    (root / "ratings.dat.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="corrupt gzip"):
        read_release(root)


@pytest.mark.parametrize("age,bucket", [(7, 1), (17, 1), (18, 18), (24, 18), (25, 25), (44, 35),
                                        (45, 45), (49, 45), (50, 50), (55, 50), (56, 56), (73, 56)])
def test_age_buckets(age, bucket):
    assert age_bucket(age) == bucket


def test_year_from_title():
    assert year_from_title("Toy Story (1995)") == 1995
    assert year_from_title("City of Lost Children, The (Cité des enfants perdus, La) (1995) ") == 1995
    assert year_from_title("Untitled") == 0


def test_plots_come_from_the_extra_files_and_reach_the_dataset_and_the_store(tmp_path, ml1m_dir):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from movierec.cli import app
    from movierec.dataset.plots import read_plots
    from movierec.store.events import EventStore

    extra = tmp_path / "ml-1m-extra"
    extra.mkdir()
    fields = ["x"] * 11
    lines = []
    for movie, plot in ((1, "Toys come alive."), (2, "N/A"), (3, "A cafe.")):
        row = list(fields)
        row[0], row[9] = str(movie), plot
        lines.append("::".join(row))
    (extra / "movies_extrainfos.dat").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    (extra / "dbpedia_abstracts.json").write_text(json.dumps({"2": "A board game.", "3": "Not this one."}))
    assert read_plots(extra) == {1: "Toys come alive.", 2: "A board game.", 3: "A cafe."}
    store = tmp_path / "store.db"
    result = CliRunner().invoke(app, ["data", "--source", str(ml1m_dir), "--out", str(tmp_path / "d"),
                                      "--plots", str(extra), "--store", str(store)])
    assert result.exit_code == 0 and "plots of 3 of 4 movies" in result.output, result.output
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    assert dict(zip(items.raw_id, items["plot"])) == {1: "Toys come alive.", 2: "A board game.", 3: "A cafe."}
    with EventStore(store).db.transaction(write=False) as tx:
        assert tx.value("SELECT plot FROM items WHERE raw_id = 4") == ""
