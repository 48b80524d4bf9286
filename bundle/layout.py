"""A bundle root on disk: version directories, the `current` symlink, and the leftovers of
builds that died.

    BUNDLES/
      current -> v20261124-131500-1a2b      (a symlink, switched atomically)
      v20261124-131500-1a2b/                (one version: manifest.json and its files)
      .tmp-v20261124-140000-9f8e7d/         (a build in progress, or one that was killed)
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from movierec.errors import MovieRecError

CURRENT = "current"
TMP_PREFIX = ".tmp-"


class BundleError(MovieRecError):
    """A bundle that cannot be built or loaded."""


def new_version() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def clean_leftovers(root: Path) -> list[str]:
    removed = []
    for path in root.glob(TMP_PREFIX + "*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def switch_current(root: Path, version: str) -> None:
    link = root / CURRENT
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:6]}"
    os.symlink(version, tmp)
    os.replace(tmp, link)


def prune(root: Path, keep: int) -> list[str]:
    current = current_version(root)
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v") and not p.is_symlink())
    removed = []
    for name in versions[:-keep] if keep > 0 else []:
        if current is None or name != current.name:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def current_version(root: str | Path) -> Path | None:
    link = Path(root) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    return (Path(root) / os.readlink(link)) if link.is_symlink() else link
