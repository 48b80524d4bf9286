"""What every bundle component (a recall channel, a ranker) shares: its files in a bundle
version, its parameters, and what the offline builder hands it.

A component is built offline from trained runs and data (`build(inputs, params)`), writes
its own artifacts (`export(files)`, which returns what the manifest records about it) and is
loaded back by the server from those files alone (`load(files, fragment)`), never importing
Paddle. Its files are plain names in the version directory, prefixed with the component:
`recall.sasrec.users.npy`, `rank.ncf.scorer.npz`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from movierec.dataset.features import FeatureEncoder
from movierec.dataset.sequences import Histories
from movierec.dataset.store import Dataset
from movierec.errors import ConfigError, MovieRecError
from movierec.files import load_npy, load_npz, save_npy, save_npz, write_json

from .index import IndexConfig, VectorIndex, load_index

INDEX_FILE = "items.index"
KIND_NAMES = {int: "an integer", float: "a number", str: "text"}


class ComponentError(MovieRecError):
    """A component that cannot be built from what was given."""


class ComponentFiles:
    """One component's files in a bundle version directory; records every name it hands out."""

    def __init__(self, directory: Path, prefix: str):
        self.directory = Path(directory)
        self.prefix = prefix
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        full = f"{self.prefix}.{name}"
        if full not in self.names:
            self.names.append(full)
        return self.directory / full

    def save_npy(self, name: str, array: np.ndarray) -> None:
        save_npy(self.path(name), array)

    def save_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        save_npz(self.path(name), arrays)

    def write_json(self, name: str, payload) -> None:
        write_json(self.path(name), payload)

    def load_npy(self, name: str) -> np.ndarray:
        return load_npy(self.path(name))

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        return load_npz(self.path(name))

    def read_json(self, name: str):
        return json.loads(self.path(name).read_text())


def parse_params(params_type: type, given: dict[str, Any], component: str):
    """A component's parameters dataclass from the given values; unknown names are refused."""
    known = {f.name: f for f in dataclasses.fields(params_type)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{component} takes no parameter {', '.join(unknown)} "
                          f"(it takes: {', '.join(known) or 'none'})")
    values = {}
    for name, value in given.items():
        kind = type(known[name].default)
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"{component}: {name} must be true or false, not {value!r}")
            values[name] = value.lower() == "true"
            continue
        try:
            values[name] = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{component}: {name} must be {KIND_NAMES.get(kind, kind.__name__)}, "
                              f"not {value!r}") from None
    return params_type(**values)


@dataclass
class BuildInputs:
    """What a component's offline `build` may read."""

    dataset: Dataset
    histories: Histories          # what the bundle holds (without each user's last item under hold-out)
    encoder: FeatureEncoder
    index: IndexConfig            # how channels index their vectors
    runs: dict[str, Path]         # trained runs by model: "sasrec", "ncf"
    posters: Path | None = None   # poster vectors (.npz), when there are any
    channels: tuple = ()          # the names of the recall channels the bundle is built with
    cluster: str = ""             # where per-user work runs (`movierec.shards`): '' = this process
    _cache: dict = field(default_factory=dict, repr=False)

    def need_channel(self, name: str, component: str) -> None:
        if name not in self.channels:
            raise ComponentError(f"{component} needs the recall channel {name!r}; this build has "
                                 f"{', '.join(self.channels) or 'none'}")

    def run(self, model: str) -> Path:
        path = self.runs.get(model)
        if path is None:
            raise ComponentError(f"no {model} run given to the build")
        return path

    def shared(self, key: str, make: Callable[[], Any]):
        """`make()` once per build: a model loaded for one component serves the others too."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


@dataclass
class AddedItems:
    """Movies added to the catalogue while a bundle is served (through the event store),
    numbered after the bundle's own. A component that takes them (`grow(added)`) extends its
    per-movie tables: with what it can compute for them (content, two-tower and, through the
    content map, SASRec vectors) or neutral rows."""

    ids: np.ndarray             # contiguous ids, following on from the catalogue's
    years: np.ndarray
    genres: np.ndarray          # (N, G) float32 multi-hot
    content: np.ndarray | None  # (N, C) content vectors from the bundle's content encoder, if it has one
    mapped: np.ndarray | None   # (N, H) their SASRec vectors through the content map

    def __len__(self) -> int:
        return len(self.ids)


def save_index(files: ComponentFiles, index: VectorIndex, config: IndexConfig) -> dict:
    """Write a channel's item index; returns its part of the channel's manifest fragment."""
    index.save(files.path(INDEX_FILE))
    return {"dim": int(index.dim), "index": {**config.to_dict(), "device": index.device}}


def open_index(files: ComponentFiles, fragment: dict) -> tuple[VectorIndex, IndexConfig]:
    """The item index `save_index` wrote, opened with the backend and settings it was built with."""
    config = IndexConfig.from_dict(fragment["index"])
    return load_index(files.path(INDEX_FILE), config), config
