"""Where commands read and write by default: everything under `movierec-work/` in the
working directory, unless an option says otherwise."""

from __future__ import annotations

from pathlib import Path

WORKDIR = Path("movierec-work")
DEFAULT_DATA = WORKDIR / "data" / "ml-100k"
BUNDLES = WORKDIR / "bundles"
STORE = WORKDIR / "store.db"  # the embedded event store (SQLite)


def run_dir(model: str, data_dir: Path, variant: str = "") -> Path:
    """movierec-work/runs/<model>-<dataset>[-<variant>]: where `movierec train` puts a run."""
    return WORKDIR / "runs" / "-".join(filter(None, (model, Path(data_dir).name, variant)))
