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


class DataError(Exception):
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


def parse_ratings(lines: list[str], sep: str, report: ParseReport,
                  with_timestamp: bool = True) -> pd.DataFrame:
    """`user sep movie sep rating [sep timestamp]` lines; `row` keeps the file order."""
    n_fields = 4 if with_timestamp else 3
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
        stamps.append(values[3] if with_timestamp else 0)
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


def _read_ml1m(source: Source) -> RawRelease:
    reports: list[ParseReport] = []
    files: dict[str, str] = {}

    users_name = source.find("users.dat")
    report = ParseReport(source.describe(users_name))
    records = []
    for number, line in enumerate(source.read_lines(users_name, "latin-1"), start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split("::")
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 fields, got {len(parts)}")
            uid, age, occ = _parse_int(parts[0]), _parse_int(parts[2]), _parse_int(parts[3])
            if parts[1] not in ("M", "F"):
                raise ValueError(f"gender {parts[1]!r}")
            if age not in AGE_BUCKETS or not 0 <= occ < len(ML1M_OCCUPATIONS):
                raise ValueError("age or occupation code out of range")
        except ValueError as exc:
            report.add(number, str(exc), line)
            continue
        records.append((uid, parts[1], age, ML1M_OCCUPATIONS[occ], parts[4].strip()))
        report.parsed += 1
    users = pd.DataFrame(records, columns=["user_raw", "gender", "age", "occupation", "zip"])
    reports.append(report)
    files["users"] = users_name

    movies_name = source.find("movies.dat")
    report = ParseReport(source.describe(movies_name))
    records = []
    for number, line in enumerate(source.read_lines(movies_name, "latin-1"), start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split("::")
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 3 fields, got {len(parts)}")
            mid = _parse_int(parts[0])
        except ValueError as exc:
            report.add(number, str(exc), line)
            continue
        genres = [g for g in parts[2].strip().split("|") if g in GENRES]
        records.append((mid, parts[1], year_from_title(parts[1]), "|".join(genres)))
        report.parsed += 1
    movies = pd.DataFrame(records, columns=["movie_raw", "title", "year", "genres"])
    reports.append(report)
    files["movies"] = movies_name

    # The complete ratings.dat when present; otherwise the timestamped partial file.
    ratings_name = source.find("ratings.dat", "ratings_ts_partial.dat")
    if ratings_name is None:
        raise DataError(f"{source.path}: no ratings.dat (or ratings_ts_partial.dat) found")
    report = ParseReport(source.describe(ratings_name))
    ratings = parse_ratings(source.read_lines(ratings_name, "latin-1"), "::", report)
    reports.append(report)
    files["ratings"] = ratings_name
    return RawRelease("ml-1m", ratings, users, movies, reports, files)


def _read_ml100k(source: Source) -> RawRelease:
    reports: list[ParseReport] = []
    files: dict[str, str] = {}

    users_name = source.find("u.user")
    if users_name is None:
        raise DataError(f"{source.path}: u.user not found")
    report = ParseReport(source.describe(users_name))
    records = []
    for number, line in enumerate(source.read_lines(users_name, "latin-1"), start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split("|")
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 fields, got {len(parts)}")
            uid, age = _parse_int(parts[0]), _parse_int(parts[1])
            if parts[2] not in ("M", "F"):
                raise ValueError(f"gender {parts[2]!r}")
        except ValueError as exc:
            report.add(number, str(exc), line)
            continue
        records.append((uid, parts[2], age_bucket(age), parts[3].strip(), parts[4].strip()))
        report.parsed += 1
    users = pd.DataFrame(records, columns=["user_raw", "gender", "age", "occupation", "zip"])
    reports.append(report)
    files["users"] = users_name

    movies_name = source.find("u.item")
    report = ParseReport(source.describe(movies_name))
    records = []
    for number, line in enumerate(source.read_lines(movies_name, "latin-1"), start=1):
        if not line.strip():
            continue
        report.lines += 1
        parts = line.split("|")
        try:
            if len(parts) != 24:
                raise ValueError(f"expected 24 fields, got {len(parts)}")
            mid = _parse_int(parts[0])
            flags = [_parse_int(f) for f in parts[6:24]]  # parts[5] is 'unknown'
        except ValueError as exc:
            report.add(number, str(exc), line)
            continue
        year = year_from_title(parts[1])
        if not year and re.search(r"\d{4}$", parts[2].strip()):
            year = int(parts[2].strip()[-4:])
        genres = "|".join(g for g, f in zip(GENRES, flags) if f)
        records.append((mid, parts[1], year, genres))
        report.parsed += 1
    movies = pd.DataFrame(records, columns=["movie_raw", "title", "year", "genres"])
    reports.append(report)
    files["movies"] = movies_name

    ratings_name = source.find("u.data")
    report = ParseReport(source.describe(ratings_name))
    ratings = parse_ratings(source.read_lines(ratings_name, "latin-1"), "\t", report)
    reports.append(report)
    files["ratings"] = ratings_name
    return RawRelease("ml-100k", ratings, users, movies, reports, files)


def read_release(path: str | Path) -> RawRelease:
    """Parse the MovieLens release at `path` (directory or zip)."""
    source = Source(path)
    fmt = detect_format(source)
    release = _read_ml1m(source) if fmt == "ml-1m" else _read_ml100k(source)
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
