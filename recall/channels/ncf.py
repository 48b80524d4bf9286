"""`ncf`: the NCF model's GMF path as an inner-product channel (known users only).

The GMF product reaches the score through the fusion MLP; taking that MLP as linear, it
contributes <u ⊙ h, i>, so u ⊙ h is the query (`NCFScorer.recall_vectors`).
"""

from __future__ import annotations

import numpy as np

from movierec.tables import grown

from ..channel import Candidates
from ..component import AddedItems, BuildInputs, ComponentFiles, open_index, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


class NCFChannel:
    name = "ncf"

    def __init__(self, index: VectorIndex, user_queries: np.ndarray, item_vectors: np.ndarray,
                 index_config: IndexConfig, source: dict | None = None):
        self.index = index
        self.user_queries = user_queries   # (num_users + 1, d)
        self.item_vectors = item_vectors   # (num_items + 1, d)
        self.index_config = index_config
        self.source = source or {}

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None:
        return None if context.user <= 0 else self.item_vectors[items] @ self.user_queries[context.user]

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None:
        if context.user <= 0:
            return None
        return Candidates(*top_k(self.index, self.user_queries[context.user], k, allowed))

    def grow(self, added: AddedItems) -> None:
        self.item_vectors = grown(self.item_vectors, len(added))   # no GMF vector: scored 0, never recalled

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "NCFChannel":
        from movierec.models.ncf.training import exported_scorer

        scorer, source = inputs.shared("ncf", lambda: exported_scorer(inputs.dataset, inputs.run("ncf")))
        users, items = scorer.recall_vectors()
        index = build_index(items[1:], np.arange(1, len(items)), inputs.index)
        return cls(index, users, items, inputs.index, source)

    def export(self, files: ComponentFiles) -> dict:
        files.save_npy("users.npy", self.user_queries)
        files.save_npy("items.npy", self.item_vectors)
        return {**save_index(files, self.index, self.index_config), "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "NCFChannel":
        index, index_config = open_index(files, fragment)
        return cls(index, files.load_npy("users.npy"), files.load_npy("items.npy"), index_config,
                   fragment.get("source"))
