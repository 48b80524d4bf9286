"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), in Paddle.

Item + learned positional embeddings, causal self-attention blocks (layer norm, residuals,
point-wise feed-forward, dropout), and the item embedding shared for scoring: the score of
item i after a sequence is <h_last, E_i>, so user states and item vectors go straight into
an inner-product index for recall. Training is in `training.py`; the serving path runs the
same forward pass in numpy (`inference.py`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import paddle
import paddle.nn as nn

from .config import SASRecConfig


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


def pad_left(sequences: Sequence, maxlen: int) -> np.ndarray:
    """Right-align each sequence's last `maxlen` items in a zero-padded (n, maxlen) array."""
    out = np.zeros((len(sequences), maxlen), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-maxlen:]
        if len(tail):
            out[row, maxlen - len(tail):] = tail
    return out


