"""Vector indexes: top-k item ids by inner product with a query, restricted to an item mask.

A `VectorIndex` backend is one module behind this protocol, registered in `INDEXES` by name;
a bundle's manifest records each channel's `IndexConfig` (backend, build string, search
parameters), and the loader opens the index with the same backend. FAISS is the default
(`faiss.py`), with FAISS' own `index_factory` strings: "Flat", "IVF256,Flat", "HNSW32".
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from movierec.errors import ConfigError
from movierec.registry import Registry

from ..context import ItemMask

INDEXES = Registry("vector index", {
    "faiss": "movierec.recall.index.faiss:FaissIndex",
    "milvus": "movierec.recall.index.milvus:MilvusIndex",
})


@dataclass(frozen=True)
class IndexConfig:
    backend: str = "faiss"
    factory: str = "Flat"                        # the backend's build string
    search: dict = field(default_factory=dict)   # search-time parameters, e.g. {"nprobe": 16}
    location: str = ""                           # an index service's address (milvus://host:port); "" in the bundle
    name: str = ""                               # the index's name there (one per channel and version)

    @classmethod
    def parse(cls, factory: str, search: str = "", backend: str = "faiss", location: str = "") -> "IndexConfig":
        """From CLI text: a build string and 'name=value,...' search parameters."""
        params = {}
        for item in filter(None, (part.strip() for part in search.split(","))):
            name, sep, value = item.partition("=")
            try:
                number = float(value)
            except ValueError:
                number = None
            if not sep or not name.strip() or number is None or number <= 0:
                raise ConfigError(f"index search parameters are name=positive number, not {item!r}")
            params[name.strip()] = int(number) if number.is_integer() else number
        return cls(backend, factory.strip(), params, location)

    @classmethod
    def from_dict(cls, saved: dict) -> "IndexConfig":
        return cls(saved["backend"], saved["factory"], dict(saved.get("search", {})), saved.get("location", ""),
                   saved.get("name", ""))

    def to_dict(self) -> dict:
        return {"backend": self.backend, "factory": self.factory, "search": dict(self.search),
                **({"location": self.location, "name": self.name} if self.location else {})}

    def named(self, version: str, component: str) -> "IndexConfig":
        """The config of one component's index in one bundle version (a name an index service
        accepts: letters, digits and underscores)."""
        from dataclasses import replace

        return replace(self, name=re.sub(r"[^0-9A-Za-z_]", "_", f"m_{version}_{component}"))

    def __str__(self) -> str:
        search = ",".join(f"{k}={v}" for k, v in sorted(self.search.items()))
        return self.factory + (f" ({search})" if search else "")


class VectorIndex(Protocol):
    device: str   # where searches run: "cpu" or "gpu:0"
    dim: int

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig) -> "VectorIndex":
        """An index over `vectors` whose rows are the item ids `ids`."""

    @classmethod
    def load(cls, path: Path, config: IndexConfig) -> "VectorIndex": ...

    @classmethod
    def check(cls, config: IndexConfig) -> None:
        """Refuse a config the backend cannot build, before any work is done."""

    @classmethod
    def set_threads(cls, threads: int) -> int:
        """Threads per search from now on; returns the previous number."""

    def search(self, queries: np.ndarray, k: int, allowed: ItemMask | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item ids), each (len(queries), k), best first; missing slots have id -1.
        `allowed` restricts the search inside the index, so excluded items need no over-fetching."""

    def save(self, path: Path) -> None: ...

    def with_added(self, vectors: np.ndarray, ids: np.ndarray) -> "VectorIndex":
        """A new index holding these rows too (items added while serving); this one is unchanged."""


def build_index(vectors: np.ndarray, ids: np.ndarray, config: IndexConfig) -> VectorIndex:
    return INDEXES.get(config.backend).build(vectors, ids, config)


def load_index(path: Path, config: IndexConfig) -> VectorIndex:
    return INDEXES.get(config.backend).load(path, config)


def check_index(config: IndexConfig) -> None:
    INDEXES.get(config.backend).check(config)


def set_search_threads(threads: int) -> None:
    """Threads each search uses, for every backend. One is fastest for the single queries of a
    server: an OpenMP team's start-up costs more than a search over a few thousand items."""
    for name in INDEXES.names():
        INDEXES.get(name).set_threads(threads)


@contextmanager
def search_threads(threads: int):
    """`set_search_threads` for a block, then each backend's previous setting again."""
    backends = [INDEXES.get(name) for name in INDEXES.names()]
    before = [backend.set_threads(threads) for backend in backends]
    try:
        yield
    finally:
        for backend, previous in zip(backends, before):
            backend.set_threads(previous)


def top_k(index: VectorIndex, query: np.ndarray, k: int, allowed: ItemMask):
    """(item ids, scores) of the top-k allowed items for one query vector."""
    scores, ids = index.search(query[None, :], k, allowed)
    keep = ids[0] > 0
    return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
