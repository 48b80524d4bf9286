"""`movierec data`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from movierec.dataset.prepare import prepare_dataset, read_source

from .common import console, err_console, progress


def prepare(source: str, out: Optional[Path], strict: bool) -> Path:
    """Read a release, list its malformed lines, write the normalised dataset; returns where."""
    path, release = read_source(source, progress)
    console.print(f"reading MovieLens from [cyan]{path}[/]")
    for report in release.reports:
        if report.malformed:
            err_console.print(f"[yellow]{report.file}: {report.malformed} malformed line(s) skipped[/]")
            for issue in report.issues[:10]:
                err_console.print(f"  line {issue.line}: {issue.reason}: {issue.text!r}")
            if report.malformed > 10:
                err_console.print(f"  ... all {report.malformed} are listed in the dataset manifest")
    prepared = prepare_dataset(path, release, source, out, strict)
    console.print(f"wrote [green]{prepared.out}[/]: {release.ratings.shape[0]:,} ratings, "
                  f"{release.ratings.user_raw.nunique():,} users, {release.ratings.movie_raw.nunique():,} "
                  f"movies (ratings from {prepared.files['ratings']}; {prepared.malformed} malformed line(s))")
    return prepared.out


def data(
    source: str = typer.Option("ml-100k", help="A directory or zip of a MovieLens release, a URL, "
                               "or 'ml-1m'/'ml-100k' (found under shared/data or MOVIEREC_DATA_DIR, "
                               "else downloaded from GroupLens)."),
    out: Optional[Path] = typer.Option(None, help="Where to write the normalised dataset "
                                       "(default: movierec-work/data/<release>)."),
    strict: bool = typer.Option(False, help="Fail instead of skipping malformed lines."),
):
    """Normalise a MovieLens release (ML-1M or ML-100K) into movierec's parquet format."""
    prepare(source, out, strict)
