"""`din`: Deep Interest Network over recall's candidates (`movierec train ranker --model din`).

Each candidate attends over the user's most recent items (the history plus the request's
recent items): an activation unit, a small MLP over the candidate's and the item's vectors and
their product, weighs every item, and the weighted sum of their vectors is the user's interest
in that candidate (summed, not normalised, so that how much of the history speaks for a
candidate counts; divided by the number of items the model reads). An MLP over the interest, the candidate, their product and the candidate's
standardised features (`rank.features`: recall signals, popularity, side features, history)
gives the logit. Item vectors are SASRec's item embeddings, projected by a learned map.

Trained listwise in Paddle (`models.ranker.din`); served here in numpy with the item-only work
precomputed: each item's projected vector and its part of the output layer.
"""

from __future__ import annotations

import numpy as np

from movierec.files import SavedArrays
from movierec.tables import grown
from movierec.rank.features import ProjectedFeatures, folded_weight
from movierec.rank.learned import LearnedRanker


def _relu(values: np.ndarray) -> None:
    """In place; multiplying by the mask is about twice as fast as `np.maximum` on float32 here."""
    np.multiply(values, values > 0, out=values)


class DINScorer(SavedArrays):
    """The exported model. Everything linear in the candidate is folded into one product per
    request: the activation unit's candidate part and its cross term, c·W + (c ⊙ s)·C, are
    c·(W + diag(s) C) for each history item s, so the (N, L, A) pre-activations come out of a
    single (N, D+1) @ (D+1, L·A) matrix product, the history part and the bias riding on a
    column of ones. Each item's (D+1, A) map as a history item is made once, when loaded, so a
    request gathers its L maps, each one contiguous block. The dense features' standardisation
    is folded into their weights."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.history = int(arrays["history"])
        self._derive()

    def _derive(self) -> None:
        a = self.arrays
        vectors = a["item_vectors"]                                   # (I+1, D) projected item vectors
        self.dim = vectors.shape[1]
        self.vectors = np.ascontiguousarray(np.concatenate([vectors, np.ones((len(vectors), 1), vectors.dtype)], 1))
        # (I+1, D+1, A): item s's map [W + diag(s) C; s·H + b]
        maps = np.empty((len(vectors), self.dim + 1, a["attention_cross"].shape[1]), np.float32)
        np.multiply(vectors[:, :, None], a["attention_cross"][None], out=maps[:, :-1])
        maps[:, :-1] += a["attention_item_w"]
        maps[:, -1] = vectors @ a["attention_history"] + a["attention_item_b"]
        self.history_maps = maps
        self.dense, shift = folded_weight(a["dense_columns"], a["dense_mean"], a["dense_scale"], a["output_dense"])
        self.width = len(self.dense)
        # the output layer's candidate part (bias in) plus the standardisation's shift
        self.item_output = np.ascontiguousarray(a["item_output"] + shift, dtype=np.float32)
        # the attention weights are divided by the number of items the model reads
        self.attention_out_w = (a["attention_out_w"] / self.history).astype(np.float32)
        self.attention_out_b = (a["attention_out_b"] / self.history).astype(np.float32)

    def grow(self, count: int) -> None:
        for key in ("item_vectors", "item_output"):
            self.arrays[key] = grown(self.arrays[key], count, fill="mean")
        self._derive()

    def score(self, sequence: np.ndarray, items: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Logits of `items` after `sequence` (oldest first); `matrix` their feature rows."""
        return self.logits(sequence, items, self.item_output[items] + matrix[:, :self.width] @ self.dense)

    def logits(self, sequence: np.ndarray, items: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """Logits given the output layer's candidate and feature part (`item_output` of the
        items plus the features times `dense`), which this adds to in place."""
        a = self.arrays
        recent = sequence[-self.history:]
        recent = recent[recent > 0]
        if len(recent):
            candidates = self.vectors[items]                                        # (N, D+1), last column 1
            seen = self.vectors[recent, :self.dim]                                  # (L, D)
            units = self.history_maps.shape[2]
            maps = self.history_maps[recent].transpose(1, 0, 2).reshape(self.dim + 1, -1)   # (D+1, L·A)
            pre = candidates @ maps                                                 # (N, L·A)
            _relu(pre)
            weights = (pre.reshape(-1, units) @ self.attention_out_w).reshape(len(items), -1)
            weights += self.attention_out_b
            interest = weights @ seen                                               # (N, D)
            hidden += weights @ (seen @ a["output_interest"])                       # = interest @ output_interest
            interest *= candidates[:, :self.dim]
            hidden += interest @ a["output_cross"]
        _relu(hidden)
        return hidden @ a["out_w"] + a["out_b"]


class DINRanker(LearnedRanker):
    name = "din"
    scorer = DINScorer

    def prepare(self) -> None:
        self.projection = ProjectedFeatures(self.features, self.model.dense, self.model.item_output)

    def score_all(self, context, merged) -> np.ndarray:
        return self.model.logits(context.sequence, merged.items, self.projection(context, merged)).astype(np.float32)
