"""`ncf-list`: the NCF ranker trained on recall's candidates (`movierec train ranker --model
ncf`): NeuMF late-fused with the side features and posters, as the standalone NCF model, with
one more input to its fusion layer, the candidate's standardised features (`rank.features`:
recall signals, popularity, history). Trained listwise in Paddle (`models.ranker.ncf_list`);
served in numpy, the item-only work precomputed as in `models.ncf.scorer`."""

from __future__ import annotations

import numpy as np

from movierec.files import SavedArrays
from movierec.models.ncf.scorer import NCFScorer
from movierec.rank.features import ProjectedFeatures, folded_weight
from movierec.rank.learned import LearnedRanker

NCF_PREFIX = "ncf_"


class CandidateNCFScorer(SavedArrays):
    """score = NCF's fusion MLP over [NeuMF parts, side, poster] plus W (x - mean) * scale."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.ncf = NCFScorer({k.removeprefix(NCF_PREFIX): v for k, v in arrays.items() if k.startswith(NCF_PREFIX)})
        self.columns = arrays["dense_columns"]   # the feature columns it reads
        self.mean, self.scale = arrays["dense_mean"], arrays["dense_scale"]
        self.weight = arrays["dense_weight"]      # (len(columns), fusion width)

    def grow(self, count: int) -> None:
        self.ncf.grow(count)

    def score(self, user: int, user_features: np.ndarray, items: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        fused = self.ncf.fusion_input(user, user_features, items)
        fused += ((matrix[:, self.columns] - self.mean) * self.scale) @ self.weight
        return self.ncf.output(fused)


class CandidateNCFRanker(LearnedRanker):
    name = "ncf-list"
    scorer = CandidateNCFScorer

    def prepare(self) -> None:
        model = self.model
        self.projection = ProjectedFeatures(self.features, *folded_weight(model.columns, model.mean, model.scale,
                                                                          model.weight))

    def score_all(self, context, merged) -> np.ndarray:
        fused = self.model.ncf.fusion_input(context.user, context.user_features, merged.items)
        fused += self.projection(context, merged)
        return self.model.ncf.output(fused).astype(np.float32)

