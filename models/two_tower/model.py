"""The two towers in Paddle.

user(u) = l2(MLP([id(u), gender, age, occupation, zip prefix, mean id embedding of the last
          `history` items]))   -- id 0 and no items: a new user, from side features alone
movie(i) = l2(MLP([id(i), genres, year bucket, content vector projected]))

A pair's score is their inner product. `export` gives the numpy scorer (`scorer.py`): every
movie's vector precomputed, with the movie id part left out for movies the training data never
held (their id embedding is untrained), and the weights a server needs for new movies.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from movierec.dataset.features import YEAR_BUCKETS

from .config import TwoTowerConfig
from .scorer import TwoTowerScorer


class TwoTower(nn.Layer):
    def __init__(self, num_users: int, feature_sizes: tuple, item_genres: np.ndarray, item_year: np.ndarray,
                 content: np.ndarray | None, config: TwoTowerConfig):
        super().__init__()
        self.config = config
        d, s = config.dim, config.side_dim
        num_items = len(item_genres)
        self.user_ids = nn.Embedding(num_users + 1, d, padding_idx=0)
        self.user_side = nn.LayerList([nn.Embedding(size, s) for size in feature_sizes])
        self.user_mlp = nn.Sequential(nn.Linear(2 * d + s * len(feature_sizes), config.hidden), nn.ReLU(),
                                      nn.Dropout(config.dropout), nn.Linear(config.hidden, d))
        self.item_ids = nn.Embedding(num_items, d, padding_idx=0)
        self.genre = nn.Linear(item_genres.shape[1], s)
        self.year = nn.Embedding(YEAR_BUCKETS + 1, s)
        width = d + 2 * s
        self.content = None
        if content is not None:
            self.content = nn.Linear(content.shape[1], 2 * s)
            width += 2 * s
            self.register_buffer("item_content", paddle.to_tensor(content.astype(np.float32)), persistable=False)
        self.item_mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                      nn.Linear(config.hidden, d))
        self.register_buffer("item_genres", paddle.to_tensor(item_genres.astype(np.float32)), persistable=False)
        self.register_buffer("item_year", paddle.to_tensor(item_year.astype(np.int64)), persistable=False)

    def users(self, users, user_features, histories):
        """histories (B, H) of item ids, 0 as padding."""
        mask = (histories > 0).astype("float32").unsqueeze(-1)
        history = (self.item_ids(histories) * mask).sum(axis=1) / paddle.clip(mask.sum(axis=1), min=1.0)
        side = [emb(user_features[:, j]) for j, emb in enumerate(self.user_side)]
        return F.normalize(self.user_mlp(paddle.concat([self.user_ids(users), *side, history], axis=-1)), axis=-1)

    def items(self, items, keep_id=None):
        """keep_id (B,) 0/1: whether the movie's id embedding takes part."""
        ids = self.item_ids(items)
        if keep_id is not None:
            ids = ids * keep_id.unsqueeze(-1)
        parts = [ids, self.genre(paddle.gather(self.item_genres, items)), self.year(paddle.gather(self.item_year, items))]
        if self.content is not None:
            parts.append(self.content(paddle.gather(self.item_content, items)))
        return F.normalize(self.item_mlp(paddle.concat(parts, axis=-1)), axis=-1)

    def forward(self, users, user_features, histories, items, keep_id=None):
        """Both towers at once: (user vectors, movie vectors) of aligned examples."""
        return self.users(users, user_features, histories), self.items(items, keep_id)

    @paddle.no_grad()
    def export(self, trained_items: np.ndarray) -> TwoTowerScorer:
        """The numpy scorer; `trained_items` (I+1,) bool: the movies the training data held."""
        items = paddle.arange(self.item_ids.weight.shape[0], dtype="int64")
        vectors = self.items(items, paddle.to_tensor(trained_items.astype(np.float32))).numpy()
        vectors[0] = 0.0
        user_ids = self.user_ids.weight.numpy().copy()
        user_ids[0] = 0.0
        item_ids = self.item_ids.weight.numpy().copy()
        item_ids[0] = 0.0
        arrays = {
            "history": np.array(self.config.history), "item_vectors": vectors.astype(np.float32),
            "item_ids": item_ids, "user_ids": user_ids, "num_user_side": np.array(len(self.user_side)),
            "user_w1": self.user_mlp[0].weight.numpy(), "user_b1": self.user_mlp[0].bias.numpy(),
            "user_w2": self.user_mlp[3].weight.numpy(), "user_b2": self.user_mlp[3].bias.numpy(),
            "genre_w": self.genre.weight.numpy(), "genre_b": self.genre.bias.numpy(),
            "year_table": self.year.weight.numpy(),
            "item_w1": self.item_mlp[0].weight.numpy(), "item_b1": self.item_mlp[0].bias.numpy(),
            "item_w2": self.item_mlp[3].weight.numpy(), "item_b2": self.item_mlp[3].bias.numpy(),
        }
        for j, emb in enumerate(self.user_side):
            arrays[f"user_side_{j}"] = emb.weight.numpy()
        if self.content is not None:
            arrays["content_w"], arrays["content_b"] = self.content.weight.numpy(), self.content.bias.numpy()
        return TwoTowerScorer({k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
                               for k, v in arrays.items()})
