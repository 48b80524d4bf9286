"""The FAISS backend of `VectorIndex`, the embedded default.

The build string is FAISS' own `index_factory` string over inner product: "Flat" (exact, the
default: a few thousand movies), "IVF256,Flat", "HNSW32", "PCA32,IVF1024,PQ16", ...; search
parameters ("nprobe", "efSearch") are set through FAISS' ParameterSpace, so FAISS itself
checks their names. Row ids are the contiguous item ids (padding 0 is never added). Where
FAISS sees a GPU, indexes are built and searched there with one set of GPU resources for the
whole process; files are always written in FAISS' CPU format.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import faiss
import numpy as np

from movierec.device import faiss_gpu_count
from movierec.errors import ConfigError, MovieRecError

from ..context import ItemMask
from . import IndexConfig

# FAISS logs each CPU-specific build it tries and cannot find; none of that is news to users.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
_REASON = re.compile(r"\.cpp:\d+: (?:Error: '.*?' failed: )?(.*)")


class IndexFileError(MovieRecError):
    """An index file that cannot be read."""


def _reason(exc: Exception) -> str:
    """FAISS' own message without its C++ location."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    match = _REASON.search(first)
    return match.group(1) if match else first


@functools.cache
def _gpu_resources():
    return faiss.StandardGpuResources()


def _base(index):
    """The index under FAISS' id-map and pre-transform wrappers."""
    index = faiss.downcast_index(index)
    while isinstance(index, (faiss.IndexIDMap, faiss.IndexPreTransform)):
        index = faiss.downcast_index(index.index)
    return index


def _new_index(dim: int, config: IndexConfig):
    try:
        index = faiss.index_factory(dim, config.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ConfigError(f"bad FAISS index string {config.factory!r}: {_reason(exc)}") from None
    return index if isinstance(index, faiss.IndexIDMap) else faiss.IndexIDMap2(index)


def _apply_search_parameters(index, config: IndexConfig) -> None:
    space = faiss.ParameterSpace()
    for name, value in config.search.items():
        try:
            space.set_index_parameter(index, name, float(value))
        except RuntimeError:
            raise ConfigError(f"FAISS index {config.factory!r} takes no search parameter {name!r}") from None


class FaissIndex:
    """A FAISS index (CPU or GPU) over item vectors, ids = contiguous item ids."""

    def __init__(self, index, device: str):
        self.index = index
        self.device = device
        base = _base(index) if device == "cpu" else None
        ivf = faiss.try_extract_index_ivf(index) if device == "cpu" else None
        if ivf is not None:
            self._params = lambda sel: faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe)
        elif isinstance(base, faiss.IndexHNSW):
            self._params = lambda sel: faiss.SearchParametersHNSW(sel=sel, efSearch=base.hnsw.efSearch)
        else:
            self._params = lambda sel: faiss.SearchParameters(sel=sel)

    @property
    def dim(self) -> int:
        return self.index.d

    @classmethod
    def check(cls, config: IndexConfig) -> None:
        _apply_search_parameters(_new_index(8, config), config)

    @classmethod
    def set_threads(cls, threads: int) -> int:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        return before

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig,
              use_gpu: bool | None = None) -> "FaissIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = _new_index(vectors.shape[1], config)
        try:
            if not index.is_trained:
                index.train(vectors)
            index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError as exc:
            raise ConfigError(f"FAISS index {config.factory!r} over {len(vectors)} vectors: {_reason(exc)}") from None
        _apply_search_parameters(index, config)
        return cls._placed(index, use_gpu)

    @classmethod
    def _placed(cls, index, use_gpu: bool | None) -> "FaissIndex":
        use_gpu = faiss_gpu_count() > 0 if use_gpu is None else use_gpu
        if use_gpu and not isinstance(_base(index), faiss.IndexHNSW):  # FAISS has no GPU HNSW
            return cls(faiss.index_cpu_to_gpu(_gpu_resources(), 0, index), "gpu:0")
        return cls(index, "cpu")

    def search(self, queries: np.ndarray, k: int, allowed: ItemMask | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.index.ntotal))
        if allowed is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=self._params(_selector(allowed)))

    def save(self, path: str | Path) -> None:
        index = self.index if self.device == "cpu" else faiss.index_gpu_to_cpu(self.index)
        faiss.write_index(index, str(path))

    def with_added(self, vectors: np.ndarray, ids: np.ndarray) -> "FaissIndex":
        """A copy with more rows; searches on this one go on undisturbed."""
        index = faiss.clone_index(self.index if self.device == "cpu" else faiss.index_gpu_to_cpu(self.index))
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
        return type(self)._placed(index, self.device != "cpu")

    @classmethod
    def load(cls, path: str | Path, config: IndexConfig, use_gpu: bool | None = None) -> "FaissIndex":
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"{Path(path).name}: unreadable FAISS index ({_reason(exc)})") from None
        _apply_search_parameters(index, config)
        return cls._placed(index, use_gpu)


def _selector(allowed: ItemMask):
    """FAISS' bitmap selector of a mask, made once per mask and shared by every search."""
    def make():
        bits = np.packbits(allowed.array, bitorder="little")  # the selector points into it
        return bits, faiss.IDSelectorBitmap(len(allowed.array), faiss.swig_ptr(bits))
    return allowed.memo("faiss", make)[1]
