"""`movierec data`: find a MovieLens release, read it and write the normalised dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from movierec.files import sha256_file
from movierec.workdir import WORKDIR

from .fetch import resolve_source
from .plots import plots_beside, read_plots
from .readers import DataError, RawRelease, read_release
from .store import write_dataset


@dataclass
class Prepared:
    out: Path
    release: RawRelease
    files: dict          # role -> where it was read from
    malformed: int


def read_source(source: str, progress=None, plots: str | None = None) -> tuple[Path, RawRelease]:
    """The release at `source`, with its movies' plots (`movies.plot`) from `plots` (a directory;
    None: `<release>-extra` beside the release when there is one; "": none)."""
    path = resolve_source(source, WORKDIR / "downloads", progress)
    release = read_release(path)
    where = plots_beside(path, release.name) if plots is None else (Path(plots) if plots else None)
    if where is not None:
        found = read_plots(where)
        release.movies["plot"] = [found.get(int(movie), "") for movie in release.movies.movie_raw]
        release.files["plots"] = str(where)
    return path, release


def prepare_dataset(path: Path, release: RawRelease, source: str, out: Path | None, strict: bool,
                    write=write_dataset) -> Prepared:
    """Write `release` (read from `path`) as a normalised dataset with `write(release, out,
    source, source_files)`; with `strict`, a release with malformed lines is refused and
    nothing is written."""
    malformed = sum(r.malformed for r in release.reports)
    if strict and malformed:
        raise DataError(f"{malformed} malformed line(s) and --strict was given; nothing written")
    out = out or WORKDIR / "data" / release.name
    files = {role: name if role == "plots" else str(path / name) if path.is_dir() else f"{path}!{name}"
             for role, name in release.files.items()}
    source_files = {role: {"path": where, "sha256": sha256_file(path / release.files[role])}
                    if path.is_dir() and (path / release.files[role]).is_file() else {"path": where}
                    for role, where in files.items()}
    write(release, out, str(source), source_files)
    return Prepared(out, release, files, malformed)
