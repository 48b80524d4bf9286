"""`ncf`: the NCF model rescoring every candidate with the user's side features and the
items' posters (`models.ncf.scorer`, numpy). User 0, a user the bundle does not know, is
scored from the request's side features alone."""

from __future__ import annotations

import numpy as np

from movierec.models.ncf.scorer import NCFScorer
from movierec.recall.component import AddedItems, BuildInputs, ComponentFiles
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged


class NCFRanker:
    name = "ncf"
    signals = ()  # scores from the side features and embeddings alone
    head = 0
    scores_head = False

    def __init__(self, scorer: NCFScorer, source: dict | None = None):
        self.scorer = scorer
        self.source = source or {}

    def score(self, context: RequestContext, merged: Merged) -> np.ndarray:
        return self.scorer.score(context.user, context.user_features, merged.items)

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "NCFRanker":
        from movierec.models.ncf.training import exported_scorer

        return cls(*inputs.shared("ncf", lambda: exported_scorer(inputs.dataset, inputs.run("ncf"))))

    def grow(self, added: AddedItems) -> None:
        self.scorer.grow(len(added))

    def export(self, files: ComponentFiles) -> dict:
        self.scorer.save(files.path("scorer.npz"))
        return {"source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "NCFRanker":
        return cls(NCFScorer.load(files.path("scorer.npz")), fragment.get("source"))
