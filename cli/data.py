"""`movierec data`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from movierec.dataset.prepare import prepare_dataset, read_source
from movierec.workdir import STORE, WORKDIR

from .common import CLIError, console, err_console, progress

STORE_OPTION = typer.Option(str(STORE), help="The event store: a SQLite file (created if missing) or "
                            "postgresql://...; '' for none.")
AS_OF_OPTION = typer.Option(None, help="With --from-store: only the events stored up to this time "
                            "(YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC).")


def prepare(source: str, out: Optional[Path], strict: bool, store: str = str(STORE),
            plots: Optional[str] = None) -> Path:
    """Read a release, list its malformed lines, import it into the event store and write the
    normalised dataset from the store (without a store: from the release); returns where."""
    path, release = read_source(source, progress, plots)
    if "plot" in release.movies:
        with_plot = int((release.movies["plot"] != "").sum())
        console.print(f"plots of {with_plot:,} of {len(release.movies):,} movies from {release.files['plots']}")
    console.print(f"reading MovieLens from [cyan]{path}[/]")
    for report in release.reports:
        if report.malformed:
            err_console.print(f"[yellow]{report.file}: {report.malformed} malformed line(s) skipped[/]")
            for issue in report.issues[:10]:
                err_console.print(f"  line {issue.line}: {issue.reason}: {issue.text!r}")
            if report.malformed > 10:
                err_console.print(f"  ... all {report.malformed} are listed in the dataset manifest")
    imported = {}
    if store:
        from movierec.store.datasets import import_and_write
        from movierec.store.events import EventStore

        def write(release, out, source, source_files):
            imported.update(import_and_write(EventStore(store), release, out, source, source_files))
        prepared = prepare_dataset(path, release, source, out, strict, write)
        added = imported["added"]
        console.print(f"event store {imported['snapshot']['store']}: added {added['feedback']:,} events, "
                      f"{added['users']:,} users, {added['items']:,} movies; the dataset holds its events up to "
                      f"#{imported['seq']:,}")
    else:
        prepared = prepare_dataset(path, release, source, out, strict)
    console.print(f"wrote [green]{prepared.out}[/]: {release.ratings.shape[0]:,} ratings, "
                  f"{release.ratings.user_raw.nunique():,} users, {release.ratings.movie_raw.nunique():,} "
                  f"movies (ratings from {prepared.files['ratings']}; {prepared.malformed} malformed line(s))")
    return prepared.out


def dataset_from_store(store: str, out: Optional[Path], as_of: Optional[str]) -> Path:
    """The dataset written from the store's snapshot; returns where."""
    from movierec.dataset.store import cut_time
    from movierec.store.datasets import STORE_RELEASE, write_snapshot
    from movierec.store.events import EventStore

    if not store:
        raise CLIError("--from-store needs a store (--store)")
    events = EventStore(store)
    out = out or WORKDIR / "data" / (events.release_name() or STORE_RELEASE)
    snapshot = write_snapshot(events, out, f"store:{events.location}", {"ratings": {"path": events.location}},
                              cut_time(as_of) if as_of else None)
    console.print(f"wrote [green]{out}[/] from the event store {events.location}: {len(snapshot.ratings):,} events "
                  f"up to #{snapshot.seq:,}" + (f" (stored by {as_of})" if as_of else ""))
    return out


def data(
    source: str = typer.Option("ml-100k", help="A directory or zip of a MovieLens release, a URL, "
                               "or 'ml-1m'/'ml-100k' (found under shared/data or MOVIEREC_DATA_DIR, "
                               "else downloaded from GroupLens)."),
    out: Optional[Path] = typer.Option(None, help="Where to write the normalised dataset "
                                       "(default: movierec-work/data/<release>)."),
    strict: bool = typer.Option(False, help="Fail instead of skipping malformed lines."),
    store: str = STORE_OPTION,
    from_store: bool = typer.Option(False, "--from-store", help="Write the dataset from what the event store "
                                    "holds (feedback and movies recorded since the release was imported) "
                                    "instead of reading a release."),
    as_of: Optional[str] = AS_OF_OPTION,
    plots: Optional[str] = typer.Option(None, help="A directory with movies' plots (movies_extrainfos.dat, "
                                        "dbpedia_abstracts.json) for the content channel; default: <release>-extra "
                                        "beside the release, when there is one; '' for none."),
    without_last: int = typer.Option(0, help="Leave out each user's last N ratings, the catalogue and ids unchanged: "
                                     "runs trained on such a dataset and bundles built from it give a ranker "
                                     "candidate lists of earlier items (`train ranker --more-lists`)."),
):
    """Normalise a MovieLens release (ML-1M or ML-100K): import it into the event store (a
    second import adds nothing) and write movierec's parquet dataset from the store."""
    if without_last < 0:
        raise CLIError(f"--without-last takes a count of ratings, not {without_last}")
    if from_store:
        out = dataset_from_store(store, out, as_of)
    else:
        if as_of:
            raise CLIError("--as-of goes with --from-store")
        out = prepare(source, out, strict, store, plots)
    if without_last:
        from movierec.dataset.store import drop_last_ratings

        dropped = drop_last_ratings(out, without_last)
        console.print(f"left out each user's last {without_last} rating(s): {dropped:,} ratings; {out} now holds "
                      "the earlier ones")
