"""`poster`: the mean poster vector of the user's recent well-rated items -> poster vectors.

The poster vectors (`dataset.posters`, centred and L2-normalised) are reduced by PCA to `dim`
dimensions for the channel: a 1280-d inner product per catalogue item would be most of a
request's time, and the leading components carry the visual similarity the channel uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from movierec.dataset.posters import catalogue_posters, load_posters
from movierec.files import sha256_file
from movierec.options import option
from movierec.tables import grown

from ..channel import Candidates, taste
from ..component import AddedItems, BuildInputs, ComponentFiles, open_index, parse_params, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


@dataclass
class PosterParams:
    dim: int = option(64, "PCA dimension of the poster vectors.")
    history: int = option(20, "Most recent well-rated items whose posters make the query.")
    well_rated: int = option(4, "Lowest rating that counts as well rated.")


def reduce_posters(posters: np.ndarray, has_poster: np.ndarray, dim: int) -> np.ndarray:
    """PCA of the (centred) poster vectors to `dim` dimensions, rows re-normalised."""
    present = has_poster > 0
    out = np.zeros((len(posters), min(dim, posters.shape[1])), dtype=np.float32)
    if present.sum() <= dim:
        out[present] = posters[present][:, :out.shape[1]]
        return out
    rows = posters[present] - posters[present].mean(axis=0)
    _, _, components = np.linalg.svd(rows, full_matrices=False)
    reduced = rows @ components[:dim].T
    out[present] = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-8)
    return out


class PosterChannel:
    name = "poster"

    def __init__(self, index: VectorIndex, vectors: np.ndarray, has_poster: np.ndarray, params: PosterParams,
                 index_config: IndexConfig, source: dict | None = None):
        self.index = index
        self.vectors = vectors          # (num_items + 1, dim)
        self.has_poster = has_poster    # (num_items + 1,) float32
        self.params = params
        self.index_config = index_config
        self.source = source or {}

    def query(self, context: RequestContext) -> np.ndarray | None:
        return context.once("poster.query", lambda: self._query(context))

    def _query(self, context: RequestContext) -> np.ndarray | None:
        """Mean poster of the most recent well-rated items that have one (recent items count as well rated)."""
        items = context.sequence[context.sequence_ratings >= self.params.well_rated]
        return taste(self.vectors, items[self.has_poster[items] > 0][-self.params.history:])

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None:
        query = self.query(context)
        if query is None:
            return None
        return np.where(self.has_poster[items] > 0, self.vectors[items] @ query, np.nan).astype(np.float32)

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None:
        query = self.query(context)
        return None if query is None else Candidates(*top_k(self.index, query, k, allowed))

    def grow(self, added: AddedItems) -> None:
        self.vectors = grown(self.vectors, len(added))        # without a poster here: not scored
        self.has_poster = grown(self.has_poster, len(added))

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "PosterChannel | None":
        if inputs.posters is None:
            return None
        settings = parse_params(PosterParams, params, cls.name)
        posters, has_poster = catalogue_posters(load_posters(inputs.posters), inputs.dataset.item_raw_ids()[1:])
        vectors = reduce_posters(posters, has_poster, settings.dim)
        with_poster = np.flatnonzero(has_poster)
        index = build_index(vectors[with_poster], with_poster, inputs.index)
        source = {"posters": str(inputs.posters), "sha256": sha256_file(inputs.posters),
                  "input_dim": int(posters.shape[1]), "items_with_poster": int(len(with_poster))}
        return cls(index, vectors, has_poster, settings, inputs.index, source)

    def export(self, files: ComponentFiles) -> dict:
        files.save_npy("vectors.npy", self.vectors)
        files.save_npy("has_poster.npy", self.has_poster)
        return {"params": asdict(self.params), **save_index(files, self.index, self.index_config),
                "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "PosterChannel":
        index, index_config = open_index(files, fragment)
        return cls(index, files.load_npy("vectors.npy"), files.load_npy("has_poster.npy"),
                   parse_params(PosterParams, fragment["params"], cls.name), index_config, fragment.get("source"))
