"""Readers for the raw MovieLens files (ML-1M `*.dat`, ML-100K `u.*`).

A source is a directory or an official zip archive; each file may be plain or gzip'd.
Malformed lines are never fatal and never silently dropped: every reader returns a
`ParseReport` that counts them and keeps their line numbers.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.errors import MovieRecError

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)

# ML-1M's occupation codes (its README); ML-100K spells occupations out.
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)

# ML-1M's age buckets; ML-100K's raw ages are mapped onto the same buckets.
AGE_BUCKETS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)

MAX_REPORTED_ISSUES = 50

_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


class DataError(MovieRecError):
    """Raised for input that cannot be read at all (missing files, empty sources)."""


@dataclass
class ParseIssue:
    line: int
    reason: str
    text: str


@dataclass
class ParseReport:
    file: str
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    issues: list[ParseIssue] = field(default_factory=list)

    def add(self, line: int, reason: str, text: str) -> None:
        self.malformed += 1
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(ParseIssue(line, reason, text[:120]))

    def to_dict(self) -> dict:
        return {
            "file": self.file, "lines": self.lines, "parsed": self.parsed,
            "malformed": self.malformed,
            "issues": [vars(i) for i in self.issues],
        }


class Source:
    """A MovieLens release on disk: a directory or a zip, members plain or `.gz`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"data source not found: {self.path}")
        self._zip = None
        if self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise DataError(f"{self.path} is neither a directory nor a zip archive")
            self._zip = zipfile.ZipFile(self.path)

    def _zip_member(self, name: str) -> str | None:
        for member in self._zip.namelist():
            if Path(member).name == name:
                return member
        return None

    def find(self, *names: str) -> str | None:
        """First of `names` (or its `.gz`) that the source holds."""
        for name in names:
            for candidate in (name, name + ".gz"):
                if self._zip is not None:
                    if self._zip_member(candidate):
                        return candidate
                elif (self.path / candidate).is_file():
                    return candidate
        return None

    def read_bytes(self, name: str) -> bytes:
        if self._zip is not None:
            data = self._zip.read(self._zip_member(name))
        else:
            data = (self.path / name).read_bytes()
        if name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise DataError(f"{self.path / name}: corrupt gzip data ({exc})") from exc
        return data

    def read_lines(self, name: str, encoding: str) -> list[str]:
        return self.read_bytes(name).decode(encoding, errors="replace").splitlines()

    def describe(self, name: str) -> str:
        return str(self.path / name) if self._zip is None else f"{self.path}!{name}"


def detect_format(source: Source) -> str:
    if source.find("movies.dat") and source.find("users.dat"):
        return "ml-1m"
    if source.find("u.data") and source.find("u.item"):
        return "ml-100k"
    raise DataError(
        f"{source.path} holds no MovieLens release: expected ML-1M "
        "(users.dat, movies.dat, ratings.dat) or ML-100K (u.data, u.user, u.item)"
    )


def _parse_int(text: str) -> int:
    text = text.strip()
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        raise ValueError(text)
    return int(text)


def parse_ratings(lines: list[str], sep: str, report: ParseReport) -> pd.DataFrame:
    """`user sep movie sep rating sep timestamp` lines; `row` keeps the file order."""
    n_fields = 4
    users, movies, ratings, stamps, rows = [], [], [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split(sep)
        if len(parts) != n_fields:
            report.add(number, f"expected {n_fields} fields, got {len(parts)}", line)
            continue
        try:
            values = [_parse_int(p) for p in parts]
        except ValueError as exc:
            report.add(number, f"not an integer: {exc}", line)
            continue
        if not 1 <= values[2] <= 5:
            report.add(number, f"rating {values[2]} outside 1..5", line)
            continue
        if values[0] <= 0 or values[1] <= 0:
            report.add(number, "ids must be positive", line)
            continue
        users.append(values[0])
        movies.append(values[1])
        ratings.append(values[2])
        stamps.append(values[3])
        rows.append(number)
        report.parsed += 1
    return pd.DataFrame({
        "user_raw": np.asarray(users, dtype=np.int64),
        "movie_raw": np.asarray(movies, dtype=np.int64),
        "rating": np.asarray(ratings, dtype=np.int8),
        "timestamp": np.asarray(stamps, dtype=np.int64),
        "row": np.asarray(rows, dtype=np.int64),
    })


def age_bucket(age: int) -> int:
    """The ML-1M bucket (1, 18, 25, ...) an age in years falls into."""
    return max(b for b in AGE_BUCKETS if b <= max(age, 1))


def year_from_title(title: str) -> int:
    match = _YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else 0


@dataclass
class RawRelease:
    """One MovieLens release as parsed, raw ids throughout."""

    name: str
    ratings: pd.DataFrame  # user_raw, movie_raw, rating, timestamp, row
    users: pd.DataFrame    # user_raw, gender, age, occupation, zip
    movies: pd.DataFrame   # movie_raw, title, year, genres ("A|B")
    reports: list[ParseReport]
    files: dict[str, str]  # role -> member name that was read


def _read_table(source: Source, name: str, sep: str, n_fields: int, parse_row, columns: list[str]):
    """Parse `name` line by line; `parse_row(parts)` returns a record or raises ValueError,
    which makes the line malformed (counted, with its number) instead of fatal."""
    report = ParseReport(source.describe(name))
    records = []
    for number, line in enumerate(source.read_lines(name, "latin-1"), start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split(sep)
        try:
            if len(parts) != n_fields:
                raise ValueError(f"expected {n_fields} fields, got {len(parts)}")
            records.append(parse_row(parts))
        except ValueError as exc:
            report.add(number, str(exc), line)
            continue
        report.parsed += 1
    return pd.DataFrame(records, columns=columns), report


USER_COLUMNS = ["user_raw", "gender", "age", "occupation", "zip"]
MOVIE_COLUMNS = ["movie_raw", "title", "year", "genres"]


def _gender(text: str) -> str:
    if text not in ("M", "F"):
        raise ValueError(f"gender {text!r}")
    return text


def _ml1m_user(parts: list[str]) -> tuple:
    age, occupation = _parse_int(parts[2]), _parse_int(parts[3])
    if age not in AGE_BUCKETS or not 0 <= occupation < len(ML1M_OCCUPATIONS):
        raise ValueError("age or occupation code out of range")
    return _parse_int(parts[0]), _gender(parts[1]), age, ML1M_OCCUPATIONS[occupation], parts[4].strip()


def _ml1m_movie(parts: list[str]) -> tuple:
    genres = [g for g in parts[2].strip().split("|") if g in GENRES]
    return _parse_int(parts[0]), parts[1], year_from_title(parts[1]), "|".join(genres)


def _ml100k_user(parts: list[str]) -> tuple:
    return (_parse_int(parts[0]), _gender(parts[2]), age_bucket(_parse_int(parts[1])),
            parts[3].strip(), parts[4].strip())


def _ml100k_movie(parts: list[str]) -> tuple:
    flags = [_parse_int(f) for f in parts[6:24]]  # parts[5] is 'unknown'
    year = year_from_title(parts[1])
    if not year and re.search(r"\d{4}$", parts[2].strip()):
        year = int(parts[2].strip()[-4:])
    return _parse_int(parts[0]), parts[1], year, "|".join(g for g, f in zip(GENRES, flags) if f)


# name, ratings files (first found wins), field separators and line parsers of each release
LAYOUTS = {
    "ml-1m": dict(users="users.dat", movies="movies.dat", ratings=("ratings.dat", "ratings_ts_partial.dat"),
                  sep="::", ratings_sep="::", user_fields=5, movie_fields=3,
                  parse_user=_ml1m_user, parse_movie=_ml1m_movie),
    "ml-100k": dict(users="u.user", movies="u.item", ratings=("u.data",), sep="|", ratings_sep="\t",
                    user_fields=5, movie_fields=24, parse_user=_ml100k_user, parse_movie=_ml100k_movie),
}


def _read(source: Source, name: str) -> RawRelease:
    layout = LAYOUTS[name]
    files: dict[str, str] = {}
    for role in ("users", "movies"):
        files[role] = source.find(layout[role])
        if files[role] is None:
            raise DataError(f"{source.path}: {layout[role]} not found")
    users, users_report = _read_table(source, files["users"], layout["sep"], layout["user_fields"],
                                      layout["parse_user"], USER_COLUMNS)
    movies, movies_report = _read_table(source, files["movies"], layout["sep"], layout["movie_fields"],
                                        layout["parse_movie"], MOVIE_COLUMNS)
    files["ratings"] = source.find(*layout["ratings"])
    if files["ratings"] is None:
        raise DataError(f"{source.path}: no {' or '.join(layout['ratings'])} found")
    report = ParseReport(source.describe(files["ratings"]))
    ratings = parse_ratings(source.read_lines(files["ratings"], "latin-1"), layout["ratings_sep"], report)
    return RawRelease(name, ratings, users, movies, [users_report, movies_report, report], files)


def read_release(path: str | Path) -> RawRelease:
    """Parse the MovieLens release at `path` (directory or zip)."""
    source = Source(path)
    fmt = detect_format(source)
    release = _read(source, fmt)
    _drop_dangling(release)
    if release.ratings.empty:
        raise DataError(f"{source.path}: no valid ratings were read")
    return release


def _drop_dangling(release: RawRelease) -> None:
    """Ratings whose user or movie is missing from the side files are malformed too."""
    report = release.reports[-1]
    ratings = release.ratings
    known = ratings.user_raw.isin(release.users.user_raw) & ratings.movie_raw.isin(release.movies.movie_raw)
    for row in ratings.loc[~known].itertuples():
        report.add(int(row.row), "unknown user or movie id",
                   f"{row.user_raw} {row.movie_raw} {row.rating} {row.timestamp}")
        report.parsed -= 1
    release.ratings = ratings.loc[known].reset_index(drop=True)
