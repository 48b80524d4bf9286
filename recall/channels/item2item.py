"""`item2item`: co-occurrence neighbours of the user's last items. It works from a single
item, and so carries users with very short histories."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from movierec.options import option
from movierec.tables import grown

from ..channel import Candidates
from ..component import AddedItems, BuildInputs, ComponentFiles, parse_params
from ..context import ItemMask, RequestContext


@dataclass
class Item2ItemParams:
    neighbours: int = option(50, "Neighbours kept per item.")
    seeds: int = option(5, "Most recent items whose neighbours are recalled.")


def item2item_neighbours(sequences_indptr: np.ndarray, sequences_items: np.ndarray, num_items: int,
                         k: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(num_items + 1, k) neighbour ids and cosine co-occurrence scores over users' histories."""
    import scipy.sparse as sp

    users = np.repeat(np.arange(len(sequences_indptr) - 1), np.diff(sequences_indptr))
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, sequences_items)),
                           shape=(len(sequences_indptr) - 1, num_items + 1))
    matrix.data[:] = 1.0  # repeated interactions count once
    co = (matrix.T @ matrix).toarray()
    counts = np.sqrt(np.maximum(np.diag(co), 1.0))
    co /= counts[:, None] * counts[None, :]
    np.fill_diagonal(co, 0.0)
    co[0, :] = 0.0
    co[:, 0] = 0.0
    # a stable sort: equal similarities (common among small counts) go to the lower id on every
    # machine, where argpartition and the default sort break ties as the CPU's SIMD sort happens to
    ids = np.argsort(-co, axis=1, kind="stable")[:, :min(k, num_items)]
    scores = np.take_along_axis(co, ids, axis=1)
    ids[scores <= 0] = 0
    return ids.astype(np.int64), scores.astype(np.float32)


class Item2ItemChannel:
    name = "item2item"

    def __init__(self, neighbour_ids: np.ndarray, neighbour_scores: np.ndarray, params: Item2ItemParams):
        self.neighbour_ids = neighbour_ids
        self.neighbour_scores = neighbour_scores
        self.params = params

    def _totals(self, context: RequestContext) -> np.ndarray | None:
        return context.once("item2item.totals", lambda: self._sum(context))

    def _sum(self, context: RequestContext) -> np.ndarray | None:
        """Every item's summed similarity to the last few items, more recent ones weighing more."""
        seeds = context.sequence[context.sequence > 0][-self.params.seeds:]
        if len(seeds) == 0:
            return None
        weights = 0.5 ** np.arange(len(seeds))[::-1]
        ids = self.neighbour_ids[seeds].ravel()
        scores = (self.neighbour_scores[seeds] * weights[:, None]).ravel()
        return np.bincount(ids, weights=scores, minlength=len(self.neighbour_ids)).astype(np.float32)

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None:
        totals = self._totals(context)
        return None if totals is None else totals[items]

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates:
        totals = self._totals(context)
        if totals is None:
            return Candidates.empty()
        totals = np.where(allowed.array, totals, 0.0).astype(np.float32)
        candidates = np.flatnonzero(totals > 0)
        top = candidates[np.argsort(-totals[candidates], kind="stable")[:k]]
        return Candidates(top.astype(np.int64), totals[top])

    def grow(self, added: AddedItems) -> None:
        self.neighbour_ids = grown(self.neighbour_ids, len(added))     # no neighbours yet (id 0 scores nothing)
        self.neighbour_scores = grown(self.neighbour_scores, len(added))

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "Item2ItemChannel":
        settings = parse_params(Item2ItemParams, params, cls.name)
        sequences = inputs.histories.sequences
        ids, scores = item2item_neighbours(sequences.indptr, sequences.items, inputs.dataset.num_items,
                                           settings.neighbours)
        return cls(ids, scores, settings)

    def export(self, files: ComponentFiles) -> dict:
        files.save_npz("neighbours.npz", {"ids": self.neighbour_ids, "scores": self.neighbour_scores})
        return {"params": asdict(self.params)}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "Item2ItemChannel":
        neighbours = files.load_npz("neighbours.npz")
        return cls(neighbours["ids"], neighbours["scores"], parse_params(Item2ItemParams, fragment["params"], cls.name))
