"""`content`: the mean content vector of the user's recent well-rated movies -> content vectors.

A movie's content vector (`dataset.content`: title and plot through TF-IDF and SVD, genres,
release year) needs no rating, so the channel finds movies no one has rated yet as readily as
the others: the cold-start channel for new movies. It reads the encoder of a content run
(`movierec train content`, build `--content-run`).

`max_history` limits it to users with that many items at most (0: every user), for a bundle
that keeps it to the cold cases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from movierec.options import option
from movierec.tables import grown

from ..channel import Candidates, taste
from ..component import AddedItems, BuildInputs, ComponentFiles, open_index, parse_params, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


@dataclass
class ContentParams:
    history: int = option(20, "Most recent well-rated items whose content vectors make the query.")
    well_rated: int = option(4, "Lowest rating that counts as well rated.")
    max_history: int = option(0, "Serve only users with at most this many items (0: every user).")


class ContentChannel:
    name = "content"

    def __init__(self, index: VectorIndex, vectors: np.ndarray, params: ContentParams, index_config: IndexConfig,
                 source: dict | None = None):
        self.index = index
        self.vectors = vectors          # (num_items + 1, dim), row 0 zero
        self.params = params
        self.index_config = index_config
        self.source = source or {}

    def query(self, context: RequestContext) -> np.ndarray | None:
        return context.once("content.query", lambda: self._query(context))

    def _query(self, context: RequestContext) -> np.ndarray | None:
        if self.params.max_history and len(context.sequence) > self.params.max_history:
            return None
        return taste(self.vectors,
                     context.sequence[context.sequence_ratings >= self.params.well_rated][-self.params.history:])

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None:
        query = self.query(context)
        return None if query is None else (self.vectors[items] @ query).astype(np.float32)

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None:
        query = self.query(context)
        return None if query is None else Candidates(*top_k(self.index, query, k, allowed))

    def grow(self, added: AddedItems) -> None:
        """Added movies are found by their content at once: the channel for new movies."""
        if added.content is None:
            self.vectors = grown(self.vectors, len(added))
            return
        self.vectors = grown(self.vectors, added.content)
        self.index = self.index.with_added(added.content, added.ids)

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "ContentChannel":
        from movierec.files import sha256_file
        from movierec.models.content import ENCODER_FILE, ContentRun, catalogue_vectors

        settings = parse_params(ContentParams, params, cls.name)
        run = inputs.run("content")
        content = inputs.shared("content.run", lambda: ContentRun.load(run))
        vectors = catalogue_vectors(content.encoder, inputs.dataset.items)
        items = np.arange(1, len(vectors))
        index = build_index(vectors[1:], items, inputs.index)
        return cls(index, vectors, settings, inputs.index,
                   {"run": str(run), "encoder_sha256": sha256_file(run / ENCODER_FILE), "dim": int(vectors.shape[1])})

    def export(self, files: ComponentFiles) -> dict:
        files.save_npy("vectors.npy", self.vectors)
        return {"params": asdict(self.params), **save_index(files, self.index, self.index_config),
                "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "ContentChannel":
        index, index_config = open_index(files, fragment)
        return cls(index, files.load_npy("vectors.npy"), parse_params(ContentParams, fragment["params"], cls.name),
                   index_config, fragment.get("source"))
