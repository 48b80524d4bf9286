"""Listwise training in Paddle, shared by the neural rankers (`ncf-list`, `din`): a softmax
over each user's candidate list, cross-entropy on the held-out target. After every epoch the
model is exported to its numpy scorer and scored on the validation lists; the best epoch is
kept (NDCG@10), and training stops after three epochs without a new best.

A model trained here is a `paddle.nn.Layer` with two more methods:

- `batch_logits(lists, rows, owners, forward)`: the logits of `lists`' rows `rows` (`owners`:
  the list each row belongs to), as a Paddle tensor, through `forward` (the model, or the model
  wrapped for data-parallel training);
- `export()`: the numpy scorer, and `list_logits(scorer, lists, i)` scores list i with it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import paddle

from movierec.rank.features import FeatureSpec

from movierec.training.distributed import parallel, parameters_digest, shard, world

from .config import RankerConfig
from .data import RankLists, list_metrics

PAD = -1e9
STALE_EPOCHS = 3


def dense_columns(spec: FeatureSpec) -> np.ndarray:
    """The feature columns a neural ranker reads as numbers (all but the categorical codes)."""
    categorical = set(spec.categorical())
    return np.array([j for j in range(len(spec.names())) if j not in categorical], dtype=np.int64)


def standardisation(lists: RankLists, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the columns over the training rows; constant columns get scale 0."""
    x = lists.features[:, columns]
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean.astype(np.float32), np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-6), 0.0).astype(np.float32)


def lists_logits(model, scorer, lists: RankLists) -> np.ndarray:
    """Every row's logit under the exported scorer."""
    out = np.zeros(len(lists.items), np.float32)
    for i in range(len(lists)):
        out[lists.indptr[i]:lists.indptr[i + 1]] = model.list_logits(scorer, lists, i)
    return out


def fit_listwise(model, train: RankLists, valid: RankLists, config: RankerConfig,
                 say: Callable[[str], None] = print):
    """Train `model` on `train` (every list holds its target), keep the best epoch on `valid`;
    returns its exported scorer."""
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=model.parameters())
    net = parallel(model)
    sizes = np.diff(train.indptr)
    positive = train.indptr[:-1] + np.array([np.flatnonzero(train.labels[s:e])[0]
                                             for s, e in zip(train.indptr[:-1], train.indptr[1:])], dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    best, best_ndcg, stale = None, -1.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for batch in shard(np.array_split(rng.permutation(len(train)), max(1, len(train) // config.batch_size))):
            rows = train.rows(batch)
            owners = np.repeat(batch, sizes[batch])
            starts = np.concatenate([[0], np.cumsum(sizes[batch])[:-1]])
            padded = np.full((len(batch), sizes[batch].max()), len(rows), dtype=np.int64)  # len(rows): the pad slot
            for j, (start, size) in enumerate(zip(starts, sizes[batch])):
                padded[j, :size] = np.arange(start, start + size)
            target = starts + (positive[batch] - train.indptr[batch])
            logits = model.batch_logits(train, rows, owners, net)
            with_pad = paddle.concat([logits, paddle.full([1], PAD)])
            table = paddle.gather(with_pad, paddle.to_tensor(padded.reshape(-1))).reshape(padded.shape)
            loss = (paddle.logsumexp(table, axis=1) - paddle.gather(logits, paddle.to_tensor(target))).mean()
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            losses.append(float(loss))
        model.eval()
        scorer = model.export()
        ndcg = list_metrics(valid, lists_logits(model, scorer, valid))["NDCG@10"]
        say(f"epoch {epoch:>2}  loss {np.mean(losses):.4f}  validation NDCG@10 {ndcg:.4f}")
        if world()[1] > 1:
            say(f"process {world()[0]}: parameters sha256 {parameters_digest(model)}")
        if ndcg > best_ndcg:
            best, best_ndcg, stale = scorer, ndcg, 0
        else:
            stale += 1
            if stale >= STALE_EPOCHS:
                break
    return best
