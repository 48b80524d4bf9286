"""Milvus as a `VectorIndex` backend (`build --index-store milvus://host:port`, or a milvus-lite
file such as `movierec-work/milvus.db`), through pymilvus (the `milvus` extra).

Each channel of a bundle version is one collection, `m_<version>_<channel>` (`IndexConfig.named`): an INT64 primary
key (the contiguous item id) and the vector, inner-product metric, with the index type and its
build parameters of `--index` (`FLAT`, `HNSW,M=16,efConstruction=200`, `IVF_FLAT,nlist=128`)
and the search parameters of `--index-search` (`ef=64`, `nprobe=16`), all recorded in the
manifest. The bundle's index file is a small JSON naming the collection and its row count,
checked when a server opens it (and loads the collection: Milvus needs that after every
reopening). The builder points the alias `movierec_<channel>` at the newest version's collection
(hot swap for other readers; a server keeps the version it loaded), and drops the collections of
versions it prunes.

Excluding what a request may not get: over-fetching k plus the number of blocked items and
dropping them here, or a filter expression inside Milvus (`id in [...]` / `id not in [...]`,
whichever list is shorter). `bench/milvus_exclusion.py` measured both (ML-100K's SASRec vectors
in milvus-lite, k = 400): the expression was as fast or faster at every size, 19.7 against 21.3
ms with 50 items blocked and 25.9 against 62.1 ms with 1,000, since fetching more rows out of
Milvus costs more than filtering inside it. So `search` filters whenever anything is blocked
(OVERFETCH_LIMIT = 0 blocked items; raise it to over-fetch below a count).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from movierec.errors import ConfigError, MovieRecError

from ..context import ItemMask

OVERFETCH_LIMIT = 0
INSERT_BATCH = 5000
ALIAS = "movierec_{channel}"


class MilvusError(MovieRecError):
    """Milvus cannot be reached, or does not hold what the bundle says."""


_CLIENTS: dict = {}


def client(uri: str):
    """One client per URI and process (milvus-lite allows one process per data file)."""
    if uri not in _CLIENTS:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise MilvusError("a Milvus index needs pymilvus: pip install 'movierec[milvus]'") from None
        address = uri.replace("milvus://", "http://", 1) if uri.startswith("milvus://") else uri
        try:
            _CLIENTS[uri] = MilvusClient(address)
        except Exception as exc:  # pymilvus raises its own and grpc errors alike
            raise MilvusError(f"cannot reach Milvus at {uri}: {exc}") from None
    return _CLIENTS[uri]


def _index_params(factory: str) -> tuple[str, dict]:
    """`HNSW,M=16,efConstruction=200` -> ("HNSW", {"M": 16, "efConstruction": 200})."""
    kind, *rest = [part.strip() for part in factory.split(",")]
    params = {}
    for item in rest:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"Milvus index parameters are name=integer, not {item!r}")
        params[name.strip()] = int(value)
    return kind.upper(), params


class MilvusIndex:
    device = "milvus"

    def __init__(self, uri: str, collection: str, dim: int, count: int, search: dict):
        self.uri, self.collection, self.dim, self.count, self.search_params = uri, collection, dim, count, search
        self.client = client(uri)

    @classmethod
    def check(cls, config) -> None:
        if not config.location:
            raise ConfigError("a Milvus index needs --index-store (milvus://host:port or a milvus-lite file)")
        _index_params(config.factory)

    @classmethod
    def set_threads(cls, threads: int) -> int:
        return threads   # searches run inside Milvus

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config) -> "MilvusIndex":
        from pymilvus import DataType, MilvusClient

        if not config.name:
            raise ConfigError("a Milvus index is built for one channel of one bundle version (no name given)")
        milvus = client(config.location)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
        kind, params = _index_params(config.factory)
        index = milvus.prepare_index_params()
        index.add_index(field_name="vector", index_type=kind, metric_type="IP", params=params)
        if milvus.has_collection(config.name):
            milvus.drop_collection(config.name)
        milvus.create_collection(config.name, schema=schema, index_params=index)
        built = cls(config.location, config.name, int(vectors.shape[1]), 0, dict(config.search))
        return built.with_added(vectors, ids)

    def with_added(self, vectors: np.ndarray, ids: np.ndarray) -> "MilvusIndex":
        """Inserts into this version's collection (movies added while serving belong to it)."""
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[start:start + INSERT_BATCH], vectors[start:start + INSERT_BATCH])]
            self.client.insert(self.collection, rows)
        self.client.flush(self.collection)
        self.client.load_collection(self.collection)
        self.count += len(ids)
        return self

    def search(self, queries: np.ndarray, k: int, allowed: ItemMask | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = max(1, min(k, self.count))
        expression, fetch, blocked = "", k, None
        if allowed is not None:
            array = allowed.array
            blocked = ~array
            blocked[0] = True
            n_blocked = int(blocked[1:].sum())
            if n_blocked > OVERFETCH_LIMIT:
                expression = allowed.memo("milvus", lambda: _expression(array))
            else:
                fetch = min(k + n_blocked, self.count)
        results = self.client.search(self.collection, data=queries.tolist(), limit=fetch, filter=expression,
                                     search_params={"metric_type": "IP", "params": self.search_params})
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, hits in enumerate(results):
            found = np.array([hit["id"] for hit in hits], dtype=np.int64)
            distance = np.array([hit["distance"] for hit in hits], dtype=np.float32)
            if blocked is not None and not expression and len(found):
                keep = ~blocked[found]
                found, distance = found[keep], distance[keep]
            ids[row, :len(found[:k])], scores[row, :len(found[:k])] = found[:k], distance[:k]
        return scores, ids

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"uri": self.uri, "collection": self.collection, "dim": self.dim,
                                          "count": self.count}))

    @classmethod
    def load(cls, path: Path, config) -> "MilvusIndex":
        saved = json.loads(Path(path).read_text())
        index = cls(config.location or saved["uri"], saved["collection"], int(saved["dim"]), int(saved["count"]),
                    dict(config.search))
        try:
            index.client.load_collection(index.collection)
            rows = int(index.client.get_collection_stats(index.collection)["row_count"])
        except Exception as exc:
            raise MilvusError(f"Milvus at {index.uri} cannot open {index.collection}: {exc}") from None
        if rows != index.count:
            raise MilvusError(f"Milvus collection {index.collection} holds {rows} vectors, the bundle {index.count}")
        return index


def _expression(allowed: np.ndarray) -> str:
    """The shorter of `id in [allowed]` and `id not in [blocked]`."""
    ids = np.flatnonzero(allowed[1:]) + 1
    blocked = np.flatnonzero(~allowed[1:]) + 1
    if len(ids) <= len(blocked):
        return f"id in [{','.join(map(str, ids.tolist()))}]" if len(ids) else "id < 0"
    return f"id not in [{','.join(map(str, blocked.tolist()))}]"


def point_alias(config, channel: str) -> None:
    """`movierec_<channel>` -> this version's collection of the channel."""
    milvus = client(config.location)
    alias = ALIAS.format(channel=channel)
    try:
        milvus.alter_alias(config.name, alias)
    except Exception:   # pymilvus: altering an alias that does not exist yet fails
        milvus.create_alias(config.name, alias)


def drop_collection(config) -> None:
    milvus = client(config.location)
    if milvus.has_collection(config.name):
        milvus.drop_collection(config.name)
