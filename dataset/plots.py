"""Plot texts of movies, for the content channel: the OMDb/IMDb crawl of ML-1M
(`movies_extrainfos.dat`, '::'-separated, the plot in field 10, 'N/A' where missing) and DBpedia
abstracts (`dbpedia_abstracts.json`, {movie id: text}), each plain or `.gz`. A movie with both
gets the OMDb plot; the abstract fills in where it has none."""

from __future__ import annotations

import json
from pathlib import Path

from .readers import DataError, Source

EXTRA_INFOS = "movies_extrainfos.dat"
ABSTRACTS = "dbpedia_abstracts.json"
PLOT_FIELD, FIELDS = 9, 11
EXTRA_DIR = "{release}-extra"   # where `movierec data` looks beside a release: ml-1m-extra


def read_plots(path: str | Path) -> dict[int, str]:
    """{raw movie id: plot} from a directory holding either file or both."""
    source = Source(path)
    plots: dict[int, str] = {}
    infos, abstracts = source.find(EXTRA_INFOS), source.find(ABSTRACTS)
    if infos is None and abstracts is None:
        raise DataError(f"{path} holds neither {EXTRA_INFOS} nor {ABSTRACTS}")
    if abstracts is not None:
        try:
            texts = json.loads(source.read_bytes(abstracts).decode("utf-8"))
            plots.update({int(movie): str(text).strip() for movie, text in texts.items() if str(text).strip()})
        except (ValueError, AttributeError) as exc:
            raise DataError(f"{source.describe(abstracts)}: not a JSON object of movie id -> text ({exc})") from None
    if infos is not None:
        for line in source.read_lines(infos, "utf-8"):
            parts = line.split("::")
            if len(parts) == FIELDS and parts[0].strip().isdigit() and parts[PLOT_FIELD].strip() not in ("", "N/A"):
                plots[int(parts[0])] = parts[PLOT_FIELD].strip()
    return plots


def plots_beside(release_path: Path, release_name: str) -> Path | None:
    """The `<release>-extra` directory beside a release directory, if there is one."""
    candidate = Path(release_path).parent / EXTRA_DIR.format(release=release_name)
    return candidate if candidate.is_dir() else None
