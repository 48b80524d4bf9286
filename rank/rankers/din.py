"""`din`: Deep Interest Network over recall's candidates (`movierec train ranker --model din`).

Each candidate attends over the user's most recent items (the history plus the request's
recent items): an activation unit, a small MLP over the candidate's and the item's vectors and
their product, weighs every item, and the weighted sum of their vectors is the user's interest
in that candidate (summed, not normalised, so that how much of the history speaks for a
candidate counts; divided by the number of items the model reads). An MLP over the interest, the candidate, their product and the candidate's
standardised features (`rank.features`: recall signals, popularity, side features, history)
gives the logit. Item vectors are SASRec's item embeddings, projected by a learned map.

Trained listwise in Paddle (`models.ranker.din`); served here in numpy with the item-only work
precomputed: each item's projected vector and its parts of both first layers.
"""

from __future__ import annotations


import numpy as np

from movierec.files import SavedArrays
from movierec.tables import grown
from movierec.rank.learned import LearnedRanker



class DINScorer(SavedArrays):
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = a = arrays
        self.history = int(a["history"])
        self.vectors = a["item_vectors"]            # (I+1, D) projected item vectors
        self.item_attention = a["item_attention"]   # (I+1, A) candidate part of the activation unit, bias in
        self.item_output = a["item_output"]         # (I+1, H) candidate part of the output layer, bias in
        self.columns, self.mean, self.scale = a["dense_columns"], a["dense_mean"], a["dense_scale"]

    def grow(self, count: int) -> None:
        for key in ("item_vectors", "item_attention", "item_output"):
            self.arrays[key] = grown(self.arrays[key], count, fill="mean")
        self.vectors, self.item_attention = self.arrays["item_vectors"], self.arrays["item_attention"]
        self.item_output = self.arrays["item_output"]

    def score(self, sequence: np.ndarray, items: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Logits of `items` after `sequence` (oldest first); `matrix` their feature rows."""
        a = self.arrays
        candidates = self.vectors[items]
        hidden = self.item_output[items]
        hidden += ((matrix[:, self.columns] - self.mean) * self.scale) @ a["output_dense"]
        recent = sequence[-self.history:]
        recent = recent[recent > 0]
        if len(recent):
            seen = self.vectors[recent]                                             # (L, D)
            length, dim = seen.shape
            units = a["attention_cross"].shape[1]
            # (c ⊙ s) C for every candidate c and item s, as one product: c (s ⊙ C)
            cross = candidates @ (seen[:, :, None] * a["attention_cross"][None]).transpose(1, 0, 2).reshape(dim, -1)
            pre = cross.reshape(len(items), length, units)
            pre += self.item_attention[items][:, None]
            pre += seen @ a["attention_history"]
            np.maximum(pre, 0, out=pre)
            weights = pre @ a["attention_out_w"] + a["attention_out_b"]              # (N, L)
            interest = (weights @ seen) / self.history                              # (N, D)
            hidden += interest @ a["output_interest"] + (interest * candidates) @ a["output_cross"]
        np.maximum(hidden, 0, out=hidden)
        return hidden @ a["out_w"] + a["out_b"]


class DINRanker(LearnedRanker):
    name = "din"
    scorer = DINScorer

    def logits(self, matrix, context, merged) -> np.ndarray:
        return self.model.score(context.sequence, merged.items, matrix).astype(np.float32)

