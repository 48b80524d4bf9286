"""Training the `ncf-list` ranker in Paddle: the NCF run's model, warm-started, with the
candidates' standardised features as one more input to its fusion layer, trained listwise
(`listwise`). The best epoch on the validation lists is exported as `CandidateNCFScorer` (numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn

from movierec.models.ncf.model import NCF, export_scorer
from movierec.models.ncf.training import load_ncf, read_ncf_config, run_features
from movierec.rank.features import FeatureSpec
from movierec.rank.learned import SCORER_FILE
from movierec.rank.rankers.ncf_list import NCF_PREFIX, CandidateNCFScorer

from movierec.training.distributed import is_main

from .config import RankerConfig
from .data import RankLists
from .listwise import dense_columns, fit_listwise, standardisation


class CandidateNCF(nn.Layer):
    def __init__(self, ncf: NCF, columns: np.ndarray, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.ncf = ncf
        self.columns, self.mean, self.scale = columns, mean, scale
        self.dense = nn.Linear(len(columns), ncf.config.fusion_hidden, bias_attr=False,
                               weight_attr=nn.initializer.Normal(std=0.01))

    def forward(self, users, user_features, items, dense):
        fusion = self.ncf.fusion
        hidden = fusion[0](self.ncf.fusion_parts(users, user_features, items)) + self.dense(dense)
        return fusion[3](fusion[2](fusion[1](hidden))).squeeze(-1)

    def batch_logits(self, lists: RankLists, rows: np.ndarray, owners: np.ndarray, forward=None):
        dense = ((lists.features[rows][:, self.columns] - self.mean) * self.scale).astype(np.float32)
        return (forward or self)(paddle.to_tensor(lists.scored_as[owners]), paddle.to_tensor(lists.user_codes[owners]),
                    paddle.to_tensor(lists.items[rows]), paddle.to_tensor(dense))

    def export(self) -> CandidateNCFScorer:
        arrays = {NCF_PREFIX + k: v for k, v in export_scorer(self.ncf).arrays.items()}
        arrays.update(dense_columns=self.columns.astype(np.int64), dense_mean=self.mean.astype(np.float32),
                      dense_scale=self.scale.astype(np.float32),
                      dense_weight=self.dense.weight.numpy().astype(np.float32))
        return CandidateNCFScorer(arrays)

    @staticmethod
    def list_logits(scorer: CandidateNCFScorer, lists: RankLists, i: int) -> np.ndarray:
        start, end = lists.indptr[i], lists.indptr[i + 1]
        return scorer.score(int(lists.scored_as[i]), lists.user_codes[i], lists.items[start:end],
                            lists.features[start:end])


def fit_ncf_list(train: RankLists, valid: RankLists, spec: FeatureSpec, config: RankerConfig, ncf_run: Path,
                 dataset, run_dir: Path, say=print) -> CandidateNCFScorer:
    paddle.seed(config.seed)
    ncf = load_ncf(ncf_run, run_features(dataset, ncf_run, read_ncf_config(ncf_run)))
    columns = dense_columns(spec)
    model = CandidateNCF(ncf, columns, *standardisation(train, columns))
    best = fit_listwise(model, train, valid, config, say)
    if is_main():
        best.save(run_dir / SCORER_FILE)
    return best
