"""Files movierec writes and reads back: atomic writes, pickle-free arrays, checksummed
directories with a manifest.

Every writer goes through a temporary file renamed into place, so a reader never sees half
a file. Arrays are `.npy`/`.npz` read with `allow_pickle=False`. A checksummed directory
(a dataset, a bundle version) has a `manifest.json` with a format number and the sha256 of
each file; `read_manifest` and `verify_files` are the one check both use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from movierec.errors import MovieRecError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, payload) -> Path:
    return write_bytes(path, json.dumps(payload, indent=2).encode())


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)
    return path


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)
    return path


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def load_npy(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def replace_dir(new: Path, target: Path) -> None:
    """Swap `new` into `target`; the old contents are removed only after the swap."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def read_manifest(directory: Path, format_key: str, expected: int, error: type[MovieRecError],
                  what: str, remedy: str) -> dict:
    """The manifest of a checksummed directory, refused unless it is of format `expected`."""
    path = directory / MANIFEST
    if path.is_symlink():
        raise error(f"{directory}: {MANIFEST} is a symbolic link; {remedy}")
    if not path.is_file():
        raise error(f"{directory} is not a {what} (no {MANIFEST}); {remedy}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get(format_key) != expected:
        found = manifest.get(format_key) if isinstance(manifest, dict) else None
        raise error(f"{directory}: {what} format {found!r}, this movierec reads {expected}; {remedy}")
    return manifest


def is_plain_name(name: str) -> bool:
    """A file name inside its directory: no separator, no '..', not absolute, not hidden."""
    return (isinstance(name, str) and bool(name) and name == Path(name).name and "/" not in name
            and "\\" not in name and not name.startswith("."))


def verify_files(directory: Path, checksums: dict[str, str], error: type[MovieRecError], remedy: str,
                 exact: bool = False) -> None:
    """Every listed file is a plain file of `directory`, present, with its sha256; with `exact`,
    nothing else is there, and no entry of the directory is a symlink."""
    if not isinstance(checksums, dict):
        raise error(f"{directory}: the manifest's checksums are not a table of file names")
    outside = [name for name in checksums if not is_plain_name(name)]
    if outside:
        raise error(f"{directory}: the manifest names files outside its directory: {outside[0][:100]!r}")
    if exact:
        links = sorted(p.name for p in directory.iterdir() if p.is_symlink())
        if links:
            raise error(f"{directory}: symbolic links are not allowed in it: {', '.join(links)}")
    for name, expected in checksums.items():
        file = directory / name
        if not file.is_file():
            raise error(f"{directory}: {name} is missing; {remedy}")
        if sha256_file(file) != expected:
            raise error(f"{directory}: {name} does not match its checksum; {remedy}")
    if exact:
        extra = sorted(p.name for p in directory.iterdir() if p.name not in checksums and p.name != MANIFEST)
        if extra:
            raise error(f"{directory}: files not in the manifest: {', '.join(extra)}")


class SavedArrays:
    """A numpy model held as one `.npz` of plain arrays (`arrays`), built from them by `cls(arrays)`."""

    arrays: dict

    def save(self, path: str | Path) -> Path:
        return save_npz(path, self.arrays)

    @classmethod
    def load(cls, path: str | Path):
        return cls(load_npz(path))
