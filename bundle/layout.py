"""A bundle root on disk: version directories, the `current` symlink, and the leftovers of
builds that died.

    BUNDLES/
      current -> v20261124-131500-1a2b      (a symlink, switched atomically)
      v20261124-131500-1a2b/                (one version: manifest.json and its files)
      .tmp-v20261124-140000-9f8e7d/         (a build in progress, or one that was killed)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from movierec.errors import MovieRecError
from movierec.files import MANIFEST

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


def built_versions(root: Path) -> list[tuple[str, str]]:
    """(build time, name) of every version directory this tool wrote, oldest first: a real
    directory whose manifest names it and says when it was built. Anything else in the root
    (a copy made by hand, a directory of another tool) is not a version."""
    versions = []
    for path in root.iterdir():
        if path.is_symlink() or not path.is_dir() or path.name.startswith("."):
            continue
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("version") == path.name and "bundle_format" in manifest \
                and isinstance(manifest.get("created_at"), str):
            versions.append((manifest["created_at"], path.name))
    return sorted(versions)


def prune(root: Path, keep: int, on_remove=None) -> list[str]:
    """Remove the oldest built versions beyond the newest `keep`; `current` and the version
    built before it (the one to roll back to) always stay. `on_remove(path)` is called before
    each version goes (to drop what it keeps outside its directory)."""
    versions = [name for _, name in built_versions(root)]
    current = current_version(root)
    protected = set()
    if current is not None and current.name in versions:
        position = versions.index(current.name)
        protected = {current.name, *versions[max(position - 1, 0):position]}
    removed = []
    for name in versions[:-keep] if keep > 0 else []:
        if name not in protected:
            if on_remove is not None:
                on_remove(root / name)
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def current_version(root: str | Path) -> Path | None:
    link = Path(root) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    return (Path(root) / os.readlink(link)) if link.is_symlink() else link
