"""Where a MovieLens release comes from: a local path, a URL, or a release name.

A release name ('ml-1m', 'ml-100k') is looked up locally first (MOVIEREC_DATA_DIR, then
`shared/data` beside the working directory), and fetched from GroupLens otherwise.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .readers import DataError

OFFICIAL_ARCHIVES = {
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
}


def local_search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MOVIEREC_DATA_DIR"):
        dirs.append(Path(os.environ["MOVIEREC_DATA_DIR"]))
    cwd = Path.cwd()
    dirs += [cwd / "shared" / "data", cwd.parent / "shared" / "data"]
    return dirs


def find_local_release(name: str) -> Path | None:
    for base in local_search_dirs():
        if (base / name).is_dir():
            return base / name
    return None


def download(url: str, cache_dir: Path, progress=None, timeout: float = 30.0) -> Path:
    """Fetch `url` into `cache_dir` (kept for next time); atomic, so no half files remain."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(url.split("?")[0]).name
    if target.is_file():
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=cache_dir)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            advance = progress(total, f"download {target.name}") if progress else None
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                if advance:
                    advance(len(block))
        os.replace(tmp_name, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise DataError(f"cannot download {url} ({exc}); offline? pass a local directory or "
                        "zip with --source") from exc
    return target


def resolve_source(source: str, cache_dir: Path, progress=None) -> Path:
    """A path to read a release from, for a path, URL or release name."""
    if source in OFFICIAL_ARCHIVES:
        local = find_local_release(source)
        if local is not None:
            return local
        source = OFFICIAL_ARCHIVES[source]
    if source.startswith(("http://", "https://")):
        return download(source, cache_dir, progress)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {path} (give a directory, a zip, a URL, "
                        f"or one of {', '.join(OFFICIAL_ARCHIVES)})")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"{path} is empty")
    return path

