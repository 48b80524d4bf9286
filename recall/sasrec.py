"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), in Paddle.

Item + learned positional embeddings, causal self-attention blocks (layer norm, residuals,
point-wise feed-forward, dropout), and the item embedding shared for scoring: the score of
item i after a sequence is <h_last, E_i>, so user states and item vectors go straight into
an inner-product index for recall.

Losses: 'bce' (the paper: one sampled negative per position), 'ce' (full softmax over the
catalogue) and 'sampled-ce' (softmax over the positive and `num_negatives` shared uniform
negatives: most of CE's quality at a fraction of its cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from movierec.dataset.evaluation import EvalTask, evaluate
from movierec.dataset.sequences import Sequences
from movierec.training import (CheckpointError, RunDir, TrainState, check_lr_schedule, fit,
                               load_model_weights, optimise_epoch)

LOSSES = ("bce", "ce", "sampled-ce")
WINDOWS = ("last", "random")
WEIGHTINGS = ("batch", "position")


@dataclass
class SASRecConfig:
    """Every knob of a SASRec run; saved with the run, so a resume cannot mix settings.

    Defaults are the paper's ML-1M settings."""

    maxlen: int = 200
    hidden: int = 50
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 200
    loss: str = "bce"
    num_negatives: int = 256      # for 'sampled-ce'
    window: str = "last"          # training window of long histories: 'last' (paper) or 'random'
    weighting: str = "position"   # loss per batch: its positions' sum over the epoch's mean positions
                                  # per batch ('position': every position weighs the same, as in the
                                  # paper's batches of mixed lengths), or their mean ('batch')
    patience: int = 10            # evaluations without improvement before stopping
    lr_decay: float = 1.0         # lr times this after lr_patience evaluations without
    lr_patience: int = 3          # improvement (1.0: constant lr)
    eval_every: int = 5
    monitor: str = "full.NDCG@10"
    seed: int = 42

    @classmethod
    def from_saved(cls, saved: dict) -> "SASRecConfig":
        """A run's saved settings; runs saved before `weighting` existed trained with 'batch'."""
        return cls(**{"weighting": "batch", **saved})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {self.window!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, not {self.weighting!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        for name in ("maxlen", "hidden", "blocks", "heads", "batch_size", "epochs",
                     "num_negatives", "patience", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        check_lr_schedule(self.lr_decay, self.lr_patience)


class PointWiseFeedForward(nn.Layer):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.Dropout(dropout),
        )

    def forward(self, x):
        return x + self.net(x)


class SASRec(nn.Layer):
    def __init__(self, num_items: int, config: SASRecConfig):
        super().__init__()
        self.num_items = num_items
        self.config = config
        d = config.hidden
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.maxlen, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.attention_norms = nn.LayerList([nn.LayerNorm(d, epsilon=1e-8) for _ in range(config.blocks)])
        self.attentions = nn.LayerList([
            nn.MultiHeadAttention(d, config.heads, dropout=config.dropout) for _ in range(config.blocks)
        ])
        self.forward_norms = nn.LayerList([nn.LayerNorm(d, epsilon=1e-8) for _ in range(config.blocks)])
        self.forwards = nn.LayerList([PointWiseFeedForward(d, config.dropout) for _ in range(config.blocks)])
        self.last_norm = nn.LayerNorm(d, epsilon=1e-8)
        causal = np.tril(np.ones((config.maxlen, config.maxlen), dtype=bool))
        self.register_buffer("causal_mask", paddle.to_tensor(causal), persistable=False)

    def forward(self, seqs):
        """(B, L) left-padded item ids -> (B, L, hidden) states; row t has seen items <= t."""
        length = seqs.shape[1]
        maxlen = self.config.maxlen
        x = self.item_emb(seqs) * math.sqrt(self.config.hidden)
        # Positions count from the right, so a batch trimmed of its all-padding columns
        # gives the same states as the full-width one.
        positions = paddle.arange(maxlen - length, maxlen, dtype="int64")
        x = x + self.pos_emb(positions).unsqueeze(0)
        x = self.emb_dropout(x)
        real = seqs != 0
        keep = real.astype(x.dtype).unsqueeze(-1)
        x = x * keep
        # Causal, and padding never attended to (the original's key masking).
        mask = paddle.logical_and(self.causal_mask[:length, :length].unsqueeze(0),
                                  real.unsqueeze(1)).unsqueeze(1)
        for norm_a, attention, norm_f, ffn in zip(self.attention_norms, self.attentions,
                                                 self.forward_norms, self.forwards):
            q = norm_a(x)
            x = q + attention(q, x, x, attn_mask=mask)
            x = ffn(norm_f(x)) * keep
        return self.last_norm(x)

    def item_vectors(self) -> np.ndarray:
        """(num_items + 1, hidden) item embeddings; row 0 is padding."""
        return self.item_emb.weight.numpy().copy()

    @paddle.no_grad()
    def user_vectors(self, sequences: Sequence, batch_size: int = 1024) -> np.ndarray:
        """The state after each item sequence, e.g. one sent in a request: (len(sequences), hidden).

        Sequences longer than maxlen keep their most recent items; an empty sequence
        gives the state of an all-padding input."""
        was_training = self.training
        self.eval()
        out = np.empty((len(sequences), self.config.hidden), dtype=np.float32)
        # Similar lengths batched together, so each batch is only as wide as it needs to be.
        order = np.argsort([len(seq) for seq in sequences], kind="stable")
        for start in range(0, len(sequences), batch_size):
            rows = order[start:start + batch_size]
            chunk = [sequences[row] for row in rows]
            width = max(1, min(self.config.maxlen, max(len(seq) for seq in chunk)))
            states = self(paddle.to_tensor(pad_left(chunk, width)))
            out[rows] = states[:, -1, :].numpy()
        if was_training:
            self.train()
        return out

    def scorer(self):
        """An evaluation `Scorer`: users' sequences -> scores over the whole catalogue."""
        def score(users: np.ndarray, histories: list) -> np.ndarray:
            return self.user_vectors(histories) @ self.item_vectors().T
        return score


class SASRecInference:
    """The same forward pass in numpy for one sequence at a time, for the request path.

    A request that brings recent items needs one new user state; Paddle's eager dispatch costs
    far more than the arithmetic for a single sequence, so serving does it here from the saved
    weights. Only the last position's state is wanted, so the last block attends from it alone."""

    def __init__(self, weights: dict[str, np.ndarray], config: SASRecConfig):
        self.config = config
        self.w = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}

    @classmethod
    def from_model(cls, model: SASRec) -> "SASRecInference":
        return cls({name: value.numpy() for name, value in model.state_dict().items()}, model.config)

    def _norm(self, name: str, x: np.ndarray) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-8) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _attention(self, block: int, queries: np.ndarray, keys: np.ndarray, causal: bool) -> np.ndarray:
        prefix = f"attentions.{block}"
        heads = self.config.heads
        d = self.config.hidden // heads
        q = self._linear(f"{prefix}.q_proj", queries).reshape(len(queries), heads, d).transpose(1, 0, 2)
        k = self._linear(f"{prefix}.k_proj", keys).reshape(len(keys), heads, d).transpose(1, 0, 2)
        v = self._linear(f"{prefix}.v_proj", keys).reshape(len(keys), heads, d).transpose(1, 0, 2)
        logits = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        if causal:
            logits = logits + np.triu(np.full((len(queries), len(keys)), -1e9, dtype=np.float32), 1)
        logits -= logits.max(-1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(-1, keepdims=True)
        out = (weights @ v).transpose(1, 0, 2).reshape(len(queries), self.config.hidden)
        return self._linear(f"{prefix}.out_proj", out)

    def user_vector(self, sequence: np.ndarray) -> np.ndarray | None:
        """The state after `sequence` (its last maxlen items); None for an empty sequence."""
        items = np.asarray(sequence, dtype=np.int64)[-self.config.maxlen:]
        items = items[items > 0]
        if len(items) == 0:
            return None
        maxlen = self.config.maxlen
        x = self.w["item_emb.weight"][items] * math.sqrt(self.config.hidden)
        x = x + self.w["pos_emb.weight"][maxlen - len(items):]
        last = self.config.blocks - 1
        for block in range(self.config.blocks):
            # the final block only needs the last position as a query
            q = self._norm(f"attention_norms.{block}", x if block < last else x[-1:])
            x = q + self._attention(block, q, x, causal=block < last)
            x = self._norm(f"forward_norms.{block}", x)
            hidden = np.maximum(self._linear(f"forwards.{block}.net.0", x), 0)
            x = x + self._linear(f"forwards.{block}.net.3", hidden)
        return self._norm("last_norm", x[-1])


def pad_left(sequences: Sequence, maxlen: int) -> np.ndarray:
    """Right-align each sequence's last `maxlen` items in a zero-padded (n, maxlen) array."""
    out = np.zeros((len(sequences), maxlen), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-maxlen:]
        if len(tail):
            out[row, maxlen - len(tail):] = tail
    return out


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
               rng: np.random.Generator):
    loss = _position_losses(model, config, batches, users, inputs, targets, rng)
    if config.weighting == "batch":
        return loss.mean()
    return loss.sum() / batches.positions_per_batch(config.batch_size)


def _position_losses(model: SASRec, config: SASRecConfig, batches: TrainingBatches,
                     users: np.ndarray, inputs: np.ndarray, targets: np.ndarray,
                     rng: np.random.Generator):
    """The loss at each real (non-padding) target position of the batch."""
    states = model(paddle.to_tensor(inputs))
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


def train_sasrec(
    train: Sequences,
    num_items: int,
    config: SASRecConfig,
    run_dir: str | Path,
    valid_task: EvalTask,
    progress=None,
    on_epoch=None,
) -> tuple[SASRec, TrainState]:
    """Train (or resume) a run in `run_dir`; returns the model with its best weights loaded.

    `progress(total)` may return a callable advanced once per batch (a progress bar)."""
    run = RunDir(run_dir)
    model = build_model(num_items, config)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, beta1=0.9, beta2=0.98,
                                      parameters=model.parameters())
    batches = TrainingBatches(train, num_items, config.maxlen, config.window)
    steps = math.ceil(len(batches) / config.batch_size)

    def train_epoch(epoch: int) -> float:
        rng = np.random.default_rng([config.seed, epoch])
        losses = ((batch_loss(model, config, batches, users, inputs, targets, rng), len(users))
                  for users, inputs, targets in batches.epoch(config.batch_size, rng))
        return optimise_epoch(optimizer, losses, progress(steps, f"epoch {epoch}") if progress else None)

    def validate() -> dict:
        return evaluate(model.scorer(), valid_task)

    state = fit(run, model, optimizer, config, train_epoch, validate, on_epoch)
    load_model_weights(model, run.best_model if run.best_model.is_file() else run.last_model)
    model.eval()
    return model, state


def load_sasrec(run_dir: str | Path, num_items: int, which: str = "best") -> SASRec:
    """A trained model from its run directory ('best' or 'last' weights)."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise CheckpointError(f"{run_dir} holds no SASRec run (no config.json)")
    config = SASRecConfig.from_saved(run.read_config())
    model = SASRec(num_items, config)
    load_model_weights(model, run.best_model if which == "best" else run.last_model)
    model.eval()
    return model
