"""Training the `ncf-list` ranker in Paddle: the NCF run's model, warm-started, with the
candidates' standardised features as one more input to its fusion layer, trained listwise
(softmax over each user's candidate list, cross-entropy on the held-out target). The best
epoch on the validation lists is exported as `CandidateNCFScorer` (numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn

from movierec.models.ncf.model import NCF, export_scorer
from movierec.models.ncf.training import load_ncf, read_ncf_config, run_features
from movierec.rank.features import FeatureSpec
from movierec.rank.rankers.ncf_list import NCF_PREFIX, SCORER_FILE, CandidateNCFScorer

from .config import RankerConfig
from .data import RankLists, list_metrics

PAD = -1e9


class CandidateNCF(nn.Layer):
    def __init__(self, ncf: NCF, dense_dim: int):
        super().__init__()
        self.ncf = ncf
        self.dense = nn.Linear(dense_dim, ncf.config.fusion_hidden, bias_attr=False,
                               weight_attr=nn.initializer.Normal(std=0.01))

    def forward(self, users, user_features, items, dense):
        fusion = self.ncf.fusion
        hidden = fusion[0](self.ncf.fusion_parts(users, user_features, items)) + self.dense(dense)
        return fusion[3](fusion[2](fusion[1](hidden))).squeeze(-1)


def export(model: CandidateNCF, columns: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> CandidateNCFScorer:
    arrays = {NCF_PREFIX + k: v for k, v in export_scorer(model.ncf).arrays.items()}
    arrays.update(dense_columns=columns.astype(np.int64), dense_mean=mean.astype(np.float32),
                  dense_scale=scale.astype(np.float32), dense_weight=model.dense.weight.numpy().astype(np.float32))
    return CandidateNCFScorer(arrays)


def scorer_logits(scorer: CandidateNCFScorer, lists: RankLists) -> np.ndarray:
    out = np.zeros(len(lists.items), np.float32)
    for i in range(len(lists)):
        start, end = lists.indptr[i], lists.indptr[i + 1]
        out[start:end] = scorer.score(int(lists.scored_as[i]), lists.user_codes[i], lists.items[start:end],
                                      lists.features[start:end])
    return out


def dense_columns(spec: FeatureSpec) -> np.ndarray:
    categorical = set(spec.categorical())
    return np.array([j for j in range(len(spec.names())) if j not in categorical], dtype=np.int64)


def fit_ncf_list(train: RankLists, valid: RankLists, spec: FeatureSpec, config: RankerConfig, ncf_run: Path,
                 dataset, run_dir: Path, say=print, progress=None) -> CandidateNCFScorer:
    paddle.seed(config.seed)
    ncf = load_ncf(ncf_run, run_features(dataset, ncf_run, read_ncf_config(ncf_run)))
    columns = dense_columns(spec)
    x = train.features[:, columns]
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-6), 0.0)
    model = CandidateNCF(ncf, len(columns))
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=model.parameters())
    sizes = np.diff(train.indptr)
    row_users = np.repeat(train.scored_as, sizes)
    row_codes = np.repeat(train.user_codes, sizes, axis=0)
    dense = ((x - mean) * scale).astype(np.float32)
    positive = train.indptr[:-1] + np.array([np.flatnonzero(train.labels[s:e])[0]
                                             for s, e in zip(train.indptr[:-1], train.indptr[1:])])
    rng = np.random.default_rng(config.seed)
    best, best_ndcg, stale = None, -1.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for batch in np.array_split(rng.permutation(len(train)), max(1, len(train) // config.batch_size)):
            rows = train.rows(batch)
            starts = np.concatenate([[0], np.cumsum(sizes[batch])[:-1]])
            padded = np.full((len(batch), sizes[batch].max()), len(rows), dtype=np.int64)  # len(rows): the pad slot
            for j, (start, size) in enumerate(zip(starts, sizes[batch])):
                padded[j, :size] = np.arange(start, start + size)
            target = starts + (positive[batch] - train.indptr[batch])
            logits = model(paddle.to_tensor(row_users[rows]), paddle.to_tensor(row_codes[rows]),
                           paddle.to_tensor(train.items[rows]), paddle.to_tensor(dense[rows]))
            with_pad = paddle.concat([logits, paddle.full([1], PAD)])
            table = paddle.gather(with_pad, paddle.to_tensor(padded.reshape(-1))).reshape(padded.shape)
            loss = (paddle.logsumexp(table, axis=1) - paddle.gather(logits, paddle.to_tensor(target))).mean()
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            losses.append(float(loss))
        model.eval()
        scorer = export(model, columns, mean, scale)
        ndcg = list_metrics(valid, scorer_logits(scorer, valid))["NDCG@10"]
        say(f"epoch {epoch:>2}  loss {np.mean(losses):.4f}  validation NDCG@10 {ndcg:.4f}")
        if ndcg > best_ndcg:
            best, best_ndcg, stale = scorer, ndcg, 0
        else:
            stale += 1
            if stale >= 3:
                break
    best.save(run_dir / SCORER_FILE)
    return best
