"""Training the two towers: every (user, position) of the training sequences is one example,
the user tower reading the items before it. Sampled softmax over the batch's movies as
negatives, corrected for how often each movie is sampled as a positive (logQ: the score minus
the log of its share), plus, from the second epoch, one hard negative per example drawn from the
user's top N under the model itself. A share of examples hide the user id and history (a new
user's request) or the id alone, and a share hide the movie id (a movie no one has rated)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from movierec.dataset.evaluation import EvalTask, evaluate
from movierec.dataset.features import year_bucket
from movierec.dataset.sequences import Sequences, item_counts
from movierec.training.checkpoints import RunDir, load_trained, read_run_config
from movierec.training.distributed import parallel, shard
from movierec.training.loop import TrainState, train

from .config import TwoTowerConfig
from .model import TwoTower
from .scorer import TwoTowerScorer

CONTENT_FILE = "content.npy"   # the movies' content vectors the run was trained with


@dataclass
class TowerInputs:
    """What the towers read besides ids, row 0 = padding / unknown."""

    user_features: np.ndarray    # (U+1, 4)
    feature_sizes: tuple
    item_genres: np.ndarray      # (I+1, G)
    item_year: np.ndarray        # (I+1,) year bucket
    content: np.ndarray | None   # (I+1, C)

    @classmethod
    def from_dataset(cls, dataset, content: np.ndarray | None) -> "TowerInputs":
        items = dataset.items.sort_values("item")
        genres = np.zeros((dataset.num_items + 1, len(dataset.encoder.genres)), np.float32)
        genres[items.item.to_numpy()] = dataset.encoder.genre_matrix(items.genres)
        year = np.zeros(dataset.num_items + 1, np.int64)
        year[items.item.to_numpy()] = year_bucket(items.year.to_numpy())
        return cls(dataset.encoder.user_matrix(dataset.users, dataset.num_users), dataset.encoder.sizes, genres,
                   year, content)


def histories_before(train: Sequences, positions: np.ndarray, length: int) -> np.ndarray:
    """(B, length) the items before each position of `train.items`, within its user, 0-padded."""
    owners = np.searchsorted(train.indptr, positions, side="right") - 1
    index = positions[:, None] - length + np.arange(length)[None]
    valid = index >= train.indptr[owners][:, None]
    return np.where(valid, train.items[np.maximum(index, 0)], 0)


def last_items(histories: list, length: int) -> np.ndarray:
    out = np.zeros((len(histories), length), np.int64)
    for row, history in enumerate(histories):
        kept = np.asarray(history[-length:], dtype=np.int64)
        out[row, length - len(kept):] = kept
    return out


def build_model(num_users: int, inputs: TowerInputs, config: TwoTowerConfig) -> TwoTower:
    paddle.seed(config.seed)
    return TwoTower(num_users, inputs.feature_sizes, inputs.item_genres, inputs.item_year, inputs.content, config)


def user_vectors(model: TwoTower, inputs: TowerInputs, users: np.ndarray, histories: list) -> np.ndarray:
    with paddle.no_grad():
        return model.users(paddle.to_tensor(users), paddle.to_tensor(inputs.user_features[users]),
                           paddle.to_tensor(last_items(histories, model.config.history))).numpy()


def train_two_tower(train_sequences: Sequences, inputs: TowerInputs, config: TwoTowerConfig, run_dir: str | Path,
                    valid_task: EvalTask, progress=None, on_epoch=None) -> tuple[TwoTower, TrainState]:
    num_users, num_items = train_sequences.num_users - 1, len(inputs.item_genres) - 1
    model = build_model(num_users, inputs, config)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=model.parameters())
    owners = np.repeat(np.arange(train_sequences.num_users), train_sequences.lengths())
    counts = item_counts(train_sequences.items, num_items)
    log_q = paddle.to_tensor(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32))
    trained = counts > 0
    everyone = np.arange(1, num_users + 1)
    net = parallel(model)

    def mine_hard(rng) -> np.ndarray:
        """Each user's top `hard_negatives` movies under the model, the training items left out."""
        scorer = model.export(trained)
        hard = np.zeros((num_users + 1, config.hard_negatives), np.int64)
        for start in range(0, len(everyone), 1024):
            users = everyone[start:start + 1024]
            scores = user_vectors(model, inputs, users, [train_sequences.of(u) for u in users]) @ scorer.item_vectors.T
            scores[:, 0] = -np.inf
            scores[np.repeat(np.arange(len(users)), train_sequences.lengths()[users]),
                   np.concatenate([train_sequences.of(u) for u in users])] = -np.inf
            hard[users] = np.argpartition(-scores, config.hard_negatives, axis=1)[:, :config.hard_negatives]
        model.train()
        return hard

    def batch_losses(rng: np.random.Generator):
        hard = mine_hard(rng) if config.hard_negatives and RunDir(run_dir).has_checkpoint() else None
        order = rng.permutation(len(train_sequences.items))
        for start in shard(range(0, len(order), config.batch_size)):
            positions = order[start:start + config.batch_size]
            size = len(positions)
            users, items = owners[positions].copy(), train_sequences.items[positions]
            histories = histories_before(train_sequences, positions, config.history)
            cold = rng.random(size) < config.cold_share
            users[cold | (rng.random(size) < config.id_dropout)] = 0
            histories[cold] = 0
            keep = (rng.random(size) >= config.item_id_dropout).astype(np.float32)
            u, v = net(paddle.to_tensor(users), paddle.to_tensor(inputs.user_features[owners[positions]]),
                       paddle.to_tensor(histories), paddle.to_tensor(items), paddle.to_tensor(keep))
            logits = u @ v.T / config.temperature - paddle.gather(log_q, paddle.to_tensor(items)).unsqueeze(0)
            duplicate = (items[:, None] == items[None, :]) & ~np.eye(size, dtype=bool)
            logits = logits + paddle.to_tensor(np.where(duplicate, -1e9, 0.0).astype(np.float32))
            if hard is not None:
                negatives = hard[owners[positions], rng.integers(0, config.hard_negatives, size)]
                clash = negatives == items
                extra = (u * model.items(paddle.to_tensor(negatives))).sum(axis=-1) / config.temperature
                extra = extra + paddle.to_tensor(np.where(clash, -1e9, 0.0).astype(np.float32))
                logits = paddle.concat([logits, extra.unsqueeze(-1)], axis=1)
            yield F.cross_entropy(logits, paddle.to_tensor(np.arange(size))), size

    def validate() -> dict:
        scorer = model.export(trained)

        def score(users: np.ndarray, histories: list) -> np.ndarray:
            return user_vectors(model, inputs, users, histories) @ scorer.item_vectors.T
        return evaluate(score, valid_task)

    state = train(run_dir, model, optimizer, config, batch_losses,
                  math.ceil(len(train_sequences.items) / config.batch_size), validate, progress, on_epoch)
    return model, state


def read_two_tower_config(run_dir: str | Path) -> TwoTowerConfig:
    return read_run_config(run_dir, TwoTowerConfig, "two-tower")


def run_inputs(dataset, run_dir: str | Path) -> TowerInputs:
    """The inputs a run was trained with: its content vectors travel inside the run directory."""
    path = Path(run_dir) / CONTENT_FILE
    content = np.load(path, allow_pickle=False) if read_two_tower_config(run_dir).content and path.is_file() else None
    return TowerInputs.from_dataset(dataset, content)


def load_two_tower(run_dir: str | Path, dataset) -> tuple[TwoTower, TowerInputs]:
    inputs = run_inputs(dataset, run_dir)
    model = load_trained(build_model(dataset.num_users, inputs, read_two_tower_config(run_dir)), run_dir)
    return model, inputs


def exported_scorer(dataset, run_dir: str | Path, trained_on: Sequences) -> TwoTowerScorer:
    """A run's best weights as the numpy scorer; `trained_on`: the sequences it was trained on."""
    model, _ = load_two_tower(run_dir, dataset)
    return model.export(item_counts(trained_on.items, dataset.num_items) > 0)
