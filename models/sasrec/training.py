"""Training SASRec: next-item batches, the three losses, and runs on disk.

Losses: 'bce' (the paper: one sampled negative per position), 'ce' (full softmax over the
catalogue) and 'sampled-ce' (softmax over the positive and `num_negatives` shared uniform
negatives: most of CE's quality at a fraction of its cost).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from movierec.dataset.evaluation import EvalTask, evaluate
from movierec.dataset.sequences import Sequences
from movierec.training.checkpoints import load_trained, read_run_config
from movierec.training.distributed import parallel, shard
from movierec.training.loop import TrainState, train

from .config import SASRecConfig
from .model import SASRec, pad_left


class TrainingBatches:
    """Next-item training pairs: input = train[:-1], target = train[1:], `maxlen` long.

    `window` 'last' keeps each user's most recent maxlen items, as the paper does; 'random'
    draws, each epoch, a window ending anywhere in the history of users longer than maxlen,
    so that their older interactions are trained on too."""

    def __init__(self, train: Sequences, num_items: int, maxlen: int, window: str = "last"):
        users = np.flatnonzero(train.lengths() >= 2)
        self.num_items = num_items
        self.maxlen = maxlen
        self.window = window
        self.train = train
        self.users = users
        self.inputs = pad_left([train.of(u)[:-1] for u in users], maxlen)
        self.targets = pad_left([train.of(u)[1:] for u in users], maxlen)
        self.lengths = (self.targets != 0).sum(axis=1)
        self.long = np.flatnonzero(train.lengths()[users] > maxlen + 1)
        self.seen = np.zeros((train.num_users, num_items + 1), dtype=bool)
        rows = np.repeat(np.arange(train.num_users), train.lengths())
        self.seen[rows, train.items] = True

    def __len__(self) -> int:
        return len(self.users)

    def positions_per_batch(self, batch_size: int) -> float:
        """Mean count of real target positions in a batch of an epoch."""
        return float(self.lengths.sum()) / math.ceil(len(self.users) / batch_size)

    def epoch(self, batch_size: int, rng: np.random.Generator):
        """Batches of users of similar length, in random order, trimmed of all-padding columns.

        Attention costs grow with the square of the batch's width; most users are far
        shorter than maxlen, so this makes an epoch several times cheaper."""
        inputs, targets = self.inputs, self.targets
        if self.window == "random" and len(self.long):
            inputs, targets = inputs.copy(), targets.copy()
            for row in self.long:
                sequence = self.train.of(self.users[row])
                end = int(rng.integers(self.maxlen + 1, len(sequence) + 1))
                inputs[row] = sequence[end - self.maxlen - 1:end - 1]
                targets[row] = sequence[end - self.maxlen:end]
        order = np.lexsort((rng.random(len(self.users)), self.lengths))
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        for index in rng.permutation(len(batches)):
            rows = batches[index]
            width = int(self.lengths[rows].max())
            yield self.users[rows], inputs[rows, -width:], targets[rows, -width:]

    def negatives(self, users: np.ndarray, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """One uniform item per position that the user never interacted with in train."""
        negatives = rng.integers(1, self.num_items + 1, size=shape)
        user_rows = np.broadcast_to(users[:, None], shape)
        clash = self.seen[user_rows, negatives]
        while clash.any():
            negatives[clash] = rng.integers(1, self.num_items + 1, size=int(clash.sum()))
            clash = self.seen[user_rows, negatives]
        return negatives


def batch_loss(model: SASRec, config: SASRecConfig, batches: TrainingBatches,
               users: np.ndarray, inputs: np.ndarray, targets: np.ndarray,
               rng: np.random.Generator, net=None):
    """`net`: the model wrapped for data-parallel training (`training.distributed.parallel`)."""
    loss = _position_losses(model, config, batches, users, inputs, targets, rng, net or model)
    if config.weighting == "batch":
        return loss.mean()
    return loss.sum() / batches.positions_per_batch(config.batch_size)


def _position_losses(model: SASRec, config: SASRecConfig, batches: TrainingBatches,
                     users: np.ndarray, inputs: np.ndarray, targets: np.ndarray,
                     rng: np.random.Generator, net):
    """The loss at each real (non-padding) target position of the batch."""
    states = net(paddle.to_tensor(inputs))
    d = config.hidden
    flat = np.flatnonzero(targets.reshape(-1))  # only real (non-padding) positions
    states = paddle.gather(states.reshape([-1, d]), paddle.to_tensor(flat))
    positives = paddle.to_tensor(targets.reshape(-1)[flat])
    item_weight = model.item_emb.weight
    if config.loss == "ce":
        logits = paddle.matmul(states, item_weight, transpose_y=True)
        return F.cross_entropy(logits, positives, reduction="none")
    pos_logits = (states * F.embedding(positives, item_weight)).sum(-1)
    if config.loss == "bce":
        negatives = batches.negatives(users, targets.shape, rng).reshape(-1)[flat]
        neg_logits = (states * F.embedding(paddle.to_tensor(negatives), item_weight)).sum(-1)
        return (F.binary_cross_entropy_with_logits(pos_logits, paddle.ones_like(pos_logits), reduction="none")
                + F.binary_cross_entropy_with_logits(neg_logits, paddle.zeros_like(neg_logits), reduction="none")) / 2
    shared = rng.integers(1, batches.num_items + 1, size=config.num_negatives)
    neg_logits = paddle.matmul(states, F.embedding(paddle.to_tensor(shared), item_weight), transpose_y=True)
    accidental = paddle.to_tensor(shared[None, :] == targets.reshape(-1)[flat][:, None])
    neg_logits = paddle.where(accidental, paddle.full_like(neg_logits, -1e9), neg_logits)
    logits = paddle.concat([pos_logits.unsqueeze(-1), neg_logits], axis=1)
    return F.cross_entropy(logits, paddle.zeros([logits.shape[0]], dtype="int64"), reduction="none")


def build_model(num_items: int, config: SASRecConfig) -> SASRec:
    paddle.seed(config.seed)
    return SASRec(num_items, config)


def train_sasrec(train_sequences: Sequences, num_items: int, config: SASRecConfig, run_dir: str | Path,
                 valid_task: EvalTask, progress=None, on_epoch=None) -> tuple[SASRec, TrainState]:
    """Train (or resume) a run in `run_dir`; returns the model with its best weights loaded."""
    model = build_model(num_items, config)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, beta1=0.9, beta2=0.98,
                                      parameters=model.parameters())
    batches = TrainingBatches(train_sequences, num_items, config.maxlen, config.window)
    net = parallel(model)

    def batch_losses(rng: np.random.Generator):
        for users, inputs, targets in shard(batches.epoch(config.batch_size, rng)):
            yield batch_loss(model, config, batches, users, inputs, targets, rng, net), len(users)

    state = train(run_dir, model, optimizer, config, batch_losses, math.ceil(len(batches) / config.batch_size),
                  lambda: evaluate(model.scorer(), valid_task), progress, on_epoch)
    return model, state


def load_sasrec(run_dir: str | Path, num_items: int, which: str = "best") -> SASRec:
    """A trained model from its run directory ('best' or 'last' weights)."""
    return load_trained(SASRec(num_items, read_run_config(run_dir, SASRecConfig, "SASRec")), run_dir, which)
