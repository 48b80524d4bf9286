"""Training the `din` ranker in Paddle (`rank.rankers.din` describes the model): SASRec's item
embeddings, frozen, under a learned projection; trained listwise (`listwise`), exported as
`DINScorer` (numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from movierec.rank.features import FeatureSpec
from movierec.rank.learned import SCORER_FILE
from movierec.rank.rankers.din import DINScorer

from movierec.training.distributed import is_main

from .config import RankerConfig
from .data import RankLists
from .listwise import dense_columns, fit_listwise, standardisation

DIM = 32          # projected item vectors
HIDDEN = 64       # units of the output layer


def _linear(inputs: int, outputs: int, bias: bool = True) -> nn.Linear:
    return nn.Linear(inputs, outputs, bias_attr=None if bias else False)


class DIN(nn.Layer):
    def __init__(self, embeddings: np.ndarray, history: int, units: int, columns: np.ndarray, mean: np.ndarray,
                 scale: np.ndarray):
        super().__init__()
        self.embeddings = paddle.to_tensor(embeddings.astype(np.float32))  # frozen: not a parameter
        self.history, self.units, self.columns, self.mean, self.scale = history, units, columns, mean, scale
        self.project = _linear(embeddings.shape[1], DIM, bias=False)
        self.attention_item = _linear(DIM, units)
        self.attention_history = _linear(DIM, units, bias=False)
        self.attention_cross = _linear(DIM, units, bias=False)
        self.attention_out = _linear(units, 1)
        self.output_item = _linear(DIM, HIDDEN)
        self.output_interest = _linear(DIM, HIDDEN, bias=False)
        self.output_cross = _linear(DIM, HIDDEN, bias=False)
        self.output_dense = _linear(len(columns), HIDDEN, bias=False)
        self.out = _linear(HIDDEN, 1)

    def vectors(self, items):
        return self.project(paddle.gather(self.embeddings, items.reshape([-1])).reshape([*items.shape, -1]))

    def forward(self, items, sequences, dense):
        """Logits (B, N) of B lists of N candidates: items (B, N), sequences (B, L) with 0 as
        padding, dense (B, N, F) standardised."""
        candidates, seen = self.vectors(items), self.vectors(sequences)               # (B, N, D), (B, L, D)
        batch, length = sequences.shape
        # (c ⊙ s) C for every candidate c and item s, as one product per list: c (s ⊙ C)
        cross = paddle.bmm(candidates, (seen.unsqueeze(-1) * self.attention_cross.weight)
                           .transpose([0, 2, 1, 3]).reshape([batch, DIM, length * self.units]))
        pre = (cross.reshape([batch, -1, length, self.units]) + self.attention_history(seen).unsqueeze(1)
               + self.attention_item(candidates).unsqueeze(2))
        weights = self.attention_out(F.relu(pre)).squeeze(-1) * (sequences > 0).astype("float32").unsqueeze(1)
        interest = paddle.bmm(weights, seen) / self.history                            # (B, N, D)
        hidden = (self.output_item(candidates) + self.output_interest(interest)
                  + self.output_cross(interest * candidates) + self.output_dense(dense))
        return self.out(F.relu(hidden)).squeeze(-1)

    def batch_logits(self, lists: RankLists, rows: np.ndarray, owners: np.ndarray, forward=None):
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])   # each list's rows are contiguous
        sizes = np.diff(np.r_[starts, len(owners)])
        batch, local = owners[starts], np.repeat(np.arange(len(starts)), sizes)
        position = np.arange(len(owners)) - np.repeat(starts, sizes)
        items = np.zeros((len(batch), sizes.max()), np.int64)
        dense = np.zeros((*items.shape, len(self.columns)), np.float32)
        items[local, position] = lists.items[rows]
        dense[local, position] = (lists.features[rows][:, self.columns] - self.mean) * self.scale
        logits = (forward or self)(paddle.to_tensor(items), paddle.to_tensor(lists.sequences[batch][:, -self.history:]),
                                   paddle.to_tensor(dense))
        return paddle.gather_nd(logits, paddle.to_tensor(np.stack([local, position], axis=1)))

    @paddle.no_grad()
    def export(self) -> DINScorer:
        vectors = self.project(self.embeddings)
        weight = {name: layer.weight.numpy() for name, layer in self.named_children()}
        return DINScorer({
            "history": np.array(self.history),
            "item_vectors": vectors.numpy(),
            "item_output": self.output_item(vectors).numpy(),
            "attention_item_w": weight["attention_item"], "attention_item_b": self.attention_item.bias.numpy(),
            "attention_history": weight["attention_history"], "attention_cross": weight["attention_cross"],
            "attention_out_w": weight["attention_out"][:, 0], "attention_out_b": self.attention_out.bias.numpy(),
            "output_interest": weight["output_interest"], "output_cross": weight["output_cross"],
            "output_dense": weight["output_dense"], "out_w": weight["out"][:, 0], "out_b": self.out.bias.numpy(),
            "dense_columns": self.columns.astype(np.int64), "dense_mean": self.mean, "dense_scale": self.scale,
        })

    @staticmethod
    def list_logits(scorer: DINScorer, lists: RankLists, i: int) -> np.ndarray:
        start, end = lists.indptr[i], lists.indptr[i + 1]
        return scorer.score(lists.sequences[i], lists.items[start:end], lists.features[start:end])


def sasrec_item_embeddings(sasrec_run: Path, num_items: int) -> np.ndarray:
    from movierec.models.sasrec.training import load_sasrec

    return load_sasrec(sasrec_run, num_items).item_vectors()


def fit_din(train: RankLists, valid: RankLists, spec: FeatureSpec, config: RankerConfig, embeddings: np.ndarray,
            run_dir: Path, say=print) -> DINScorer:
    paddle.seed(config.seed)
    columns = dense_columns(spec)
    model = DIN(embeddings, config.history, config.attention_units, columns, *standardisation(train, columns))
    best = fit_listwise(model, train, valid, config, say)
    if is_main():
        best.save(run_dir / SCORER_FILE)
    return best
