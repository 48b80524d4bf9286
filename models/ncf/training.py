"""Training NCF for ranking: implicit positives from the ratings with sampled negatives
(uniform or popularity-weighted), BCE or BPR; runs on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from movierec.dataset.evaluation import EvalTask, evaluate
from movierec.dataset.posters import load_posters
from movierec.dataset.readers import DataError
from movierec.dataset.sequences import Sequences, item_counts
from movierec.training.checkpoints import load_trained, read_run_config
from movierec.training.distributed import parallel, shard
from movierec.training.loop import TrainState, train

from .config import NCFConfig
from .model import NCF, Features
from .scorer import NCFScorer


class PairSampler:
    """Training pairs: every (user, train item) positive with `num_negatives` sampled negatives."""

    def __init__(self, train: Sequences, num_items: int, sampler: str):
        self.num_items = num_items
        self.users = np.repeat(np.arange(train.num_users), train.lengths())
        self.items = train.items
        self.seen = np.zeros((train.num_users, num_items + 1), dtype=bool)
        self.seen[self.users, self.items] = True
        counts = item_counts(self.items, num_items)
        if sampler == "popularity":
            weights = counts ** 0.75  # word2vec's smoothing keeps the tail reachable
        else:
            weights = (np.arange(num_items + 1) > 0).astype(np.float64)
        self.cdf = np.cumsum(weights / weights.sum())

    def _draw(self, size, rng, uniform: bool = False) -> np.ndarray:
        if uniform:
            return rng.integers(1, self.num_items + 1, size=size)
        return np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), self.num_items)

    def negatives(self, users: np.ndarray, count: int, rng) -> np.ndarray:
        """`count` items per user outside its training items, by rejection sampling; after a few
        rounds the rest are drawn uniformly, so a user who has seen every weighted item still gets some."""
        if (self.seen[users, 1:].all(axis=1)).any():
            raise DataError("a user has interacted with every item: no negative can be sampled")
        shape = (len(users), count)
        negatives = self._draw(shape, rng)
        rows = np.broadcast_to(users[:, None], shape)
        clash = self.seen[rows, negatives] | (negatives == 0)
        rounds = 0
        while clash.any():
            rounds += 1
            negatives[clash] = self._draw(int(clash.sum()), rng, uniform=rounds > 10)
            clash = self.seen[rows, negatives] | (negatives == 0)
        return negatives

    def epoch(self, batch_size: int, rng):
        order = rng.permutation(len(self.users))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield self.users[rows], self.items[rows]


def build_model(features: Features, config: NCFConfig) -> NCF:
    paddle.seed(config.seed)
    return NCF(features, config)


def ncf_scorer_for_eval(scorer: NCFScorer, features: Features):
    def score(users: np.ndarray, histories: list) -> np.ndarray:
        return scorer.score_all(users, features.user_features[users])
    return score


def train_ncf(train_sequences: Sequences, features: Features, config: NCFConfig, run_dir: str | Path,
              valid_task: EvalTask, progress=None, on_epoch=None) -> tuple[NCF, TrainState]:
    """Train (or resume) a run in `run_dir`; returns the model with its best weights loaded."""
    model = build_model(features, config)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=model.parameters())
    pairs = PairSampler(train_sequences, features.num_items, config.sampler)
    user_features = features.user_features
    net = parallel(model)

    def logits(users: np.ndarray, items: np.ndarray):
        return net(paddle.to_tensor(users), paddle.to_tensor(user_features[users]), paddle.to_tensor(items))

    def batch_losses(rng: np.random.Generator):
        k = config.num_negatives
        for users, positives in shard(pairs.epoch(config.batch_size, rng)):
            negatives = pairs.negatives(users, k, rng)
            # one forward pass for positives and negatives (as data-parallel training wants)
            scores = logits(np.concatenate([users, np.repeat(users, k)]), np.concatenate([positives, negatives.reshape(-1)]))
            if config.loss == "bce":
                labels = np.concatenate([np.ones(len(users)), np.zeros(len(users) * k)]).astype(np.float32)
                loss = F.binary_cross_entropy_with_logits(scores, paddle.to_tensor(labels))
            else:
                positive_scores, negative_scores = scores[:len(users)], scores[len(users):].reshape([-1, k])
                loss = -F.log_sigmoid(positive_scores.unsqueeze(-1) - negative_scores).mean()
            yield loss, len(users)

    state = train(run_dir, model, optimizer, config, batch_losses, math.ceil(len(pairs.users) / config.batch_size),
                  lambda: evaluate(ncf_scorer_for_eval(model.export_scorer(), features), valid_task),
                  progress, on_epoch)
    return model, state


POSTERS_FILE = "posters.npz"


def read_ncf_config(run_dir: str | Path) -> NCFConfig:
    return read_run_config(run_dir, NCFConfig, "NCF")


def run_features(dataset, run_dir: str | Path, config: NCFConfig) -> Features:
    """The features a run was trained with: its poster vectors travel inside the run directory."""
    posters = load_posters(Path(run_dir) / POSTERS_FILE) if config.posters else None
    return Features.from_dataset(dataset, posters)


def load_ncf(run_dir: str | Path, features: Features, which: str = "best") -> NCF:
    return load_trained(NCF(features, read_ncf_config(run_dir)), run_dir, which)


def exported_scorer(dataset, run_dir: str | Path) -> tuple[NCFScorer, dict]:
    """A run's best weights as the numpy scorer, and what the bundle records of its source."""
    from movierec.files import sha256_file
    from movierec.training.checkpoints import RunDir

    config = read_ncf_config(run_dir)
    model = load_ncf(run_dir, run_features(dataset, run_dir, config))
    source = {"run": str(run_dir), "weights_sha256": sha256_file(RunDir(run_dir).best_model),
              "side_features": config.side_features, "posters": config.posters}
    return model.export_scorer(), source
