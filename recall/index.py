"""FAISS inner-product indexes over item vectors.

Exact `IndexFlatIP` by default (a few thousand movies); IVF or HNSW for large catalogues,
chosen with a spec string: 'flat', 'ivf,nlist=256,nprobe=16', 'hnsw,m=32,ef=64'. Row ids are
the contiguous item ids (padding row 0 is never added). On a machine where FAISS sees a GPU,
indexes are built and searched there; files are always written in FAISS' own CPU format.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movierec.device import faiss_gpu_count
from movierec.errors import MovieRecError

# FAISS logs each CPU-specific build it tries and cannot find; none of that is news to users.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)


class IndexFileError(MovieRecError):
    """A bad index spec or an index file that cannot be read."""


@dataclass
class IndexSpec:
    kind: str = "flat"
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "IndexSpec":
        kind, *rest = [part.strip() for part in text.split(",") if part.strip()]
        kind = kind.lower()
        allowed = {"flat": set(), "ivf": {"nlist", "nprobe"}, "hnsw": {"m", "ef"}}
        if kind not in allowed:
            raise IndexFileError(f"index kind must be flat, ivf or hnsw, not {kind!r}")
        params = {}
        for item in rest:
            key, _, value = item.partition("=")
            key = key.strip().lower()
            if key not in allowed[kind] or not value.strip().isdigit() or int(value) <= 0:
                raise IndexFileError(f"bad index option {item!r} for {kind} "
                                  f"(allowed: {', '.join(sorted(allowed[kind])) or 'none'}, positive integers)")
            params[key] = int(value)
        return cls(kind, params)

    def __str__(self) -> str:
        return ",".join([self.kind] + [f"{k}={v}" for k, v in sorted(self.params.items())])


def set_search_threads(threads: int) -> None:
    """Threads FAISS uses per search. One is fastest for the single queries of a server:
    OpenMP's start-up for a search over a few thousand items costs more than the search."""
    import faiss

    faiss.omp_set_num_threads(threads)


@contextmanager
def search_threads(threads: int):
    """`set_search_threads` for a block, restoring FAISS' thread count after it."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _to_gpu(index):
    import faiss

    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


class AllowedItems:
    """A boolean mask over item ids and the FAISS selector for it, made once per request and
    shared by every channel's search."""

    def __init__(self, mask: np.ndarray):
        import faiss

        self.mask = mask
        self._bits = np.packbits(mask, bitorder="little")  # the selector points into it
        self.selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bits))


class ItemIndex:
    """Top-k items by inner product with a query vector; ids are contiguous item ids."""

    def __init__(self, index, device: str):
        import faiss

        self.index = index
        self.device = device
        base = faiss.downcast_index(index.index) if device == "cpu" else None
        if isinstance(base, faiss.IndexIVF):
            self._params = lambda sel: faiss.SearchParametersIVF(sel=sel, nprobe=base.nprobe)
        elif isinstance(base, faiss.IndexHNSW):
            self._params = lambda sel: faiss.SearchParametersHNSW(sel=sel, efSearch=base.hnsw.efSearch)
        else:
            self._params = lambda sel: faiss.SearchParameters(sel=sel)

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def size(self) -> int:
        return self.index.ntotal

    @classmethod
    def build(cls, item_vectors: np.ndarray, item_ids: np.ndarray, spec: IndexSpec | str = "flat",
              use_gpu: bool | None = None) -> "ItemIndex":
        import faiss

        spec = IndexSpec.parse(spec) if isinstance(spec, str) else spec
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if spec.kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif spec.kind == "ivf":
            nlist = min(spec.params.get("nlist", max(1, int(np.sqrt(len(vectors))))), len(vectors))
            base = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            base.nprobe = min(spec.params.get("nprobe", 8), nlist)
        else:
            base = faiss.IndexHNSWFlat(dim, spec.params.get("m", 32), faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efSearch = spec.params.get("ef", 64)
        index = faiss.IndexIDMap2(base)
        use_gpu = faiss_gpu_count() > 0 if use_gpu is None else use_gpu
        device = "cpu"
        if use_gpu and spec.kind != "hnsw":  # FAISS has no GPU HNSW
            index, device = _to_gpu(index), "gpu:0"
        if not index.is_trained:
            index.train(vectors)
        index.add_with_ids(vectors, np.ascontiguousarray(item_ids, dtype=np.int64))
        return cls(index, device)

    def search(self, queries: np.ndarray, k: int, allowed: AllowedItems | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item ids), each (len(queries), k); missing slots have id -1.

        `allowed` restricts the search inside FAISS (an IDSelectorBitmap), so excluded items
        cost nothing and need no over-fetching."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.index.ntotal))
        if allowed is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=self._params(allowed.selector))

    def save(self, path: str | Path) -> None:
        import faiss

        index = self.index
        if self.device != "cpu":
            index = faiss.index_gpu_to_cpu(index)
        faiss.write_index(index, str(path))

    @classmethod
    def load(cls, path: str | Path, use_gpu: bool | None = None) -> "ItemIndex":
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"{path}: unreadable FAISS index ({str(exc).splitlines()[0]})") from exc
        use_gpu = faiss_gpu_count() > 0 if use_gpu is None else use_gpu
        if use_gpu and "HNSW" not in type(faiss.downcast_index(index.index)).__name__:
            return cls(_to_gpu(index), "gpu:0")
        return cls(index, "cpu")
