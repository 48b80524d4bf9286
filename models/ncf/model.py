"""NCF: NeuMF (GMF + MLP) late-fused with side features and poster vectors, in Paddle.

score(u, i) = f([ GMF(u, i), MLP(u, i), user side(u), item side(i), poster(i), has_poster(i) ])

- GMF: user ⊙ item embeddings; MLP: separate embeddings through a ReLU tower (64-32-16).
- user side: gender, age bucket, occupation, zip prefix embeddings; item side: release-year
  bucket embedding and a learned projection of the 18 genres; poster: the poster vector
  projected by a learned layer, zero with the presence flag off where a movie has none.
- f: a small ReLU MLP to one logit.

`export_scorer` gives the serving form, `NCFScorer` (scorer.py): numpy, with the item-only
work precomputed. Training is in `training.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn

from movierec.dataset.features import YEAR_BUCKETS, year_bucket
from movierec.dataset.posters import PosterVectors, catalogue_posters

from .config import NCFConfig
from .scorer import NCFScorer


@dataclass
class Features:
    """Side features in id order (row 0 = padding / unknown), as the model consumes them."""

    user_features: np.ndarray   # (num_users + 1, 4) int64
    feature_sizes: tuple        # vocabulary size (with 0) of each user feature
    item_year: np.ndarray       # (num_items + 1,) int64 year bucket
    item_genres: np.ndarray     # (num_items + 1, 18) float32
    posters: np.ndarray         # (num_items + 1, P) float32, centred and L2-normalised
    has_poster: np.ndarray      # (num_items + 1,) float32

    @property
    def num_users(self) -> int:
        return len(self.user_features) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_year) - 1

    @classmethod
    def from_dataset(cls, dataset, poster_vectors: PosterVectors | None = None) -> "Features":
        encoder = dataset.encoder
        items = dataset.items.sort_values("item")
        item_year = np.zeros(dataset.num_items + 1, dtype=np.int64)
        item_year[items.item.to_numpy()] = year_bucket(items.year.to_numpy())
        item_genres = np.zeros((dataset.num_items + 1, len(encoder.genres)), dtype=np.float32)
        item_genres[items.item.to_numpy()] = encoder.genre_matrix(items.genres)
        posters, has_poster = catalogue_posters(poster_vectors, dataset.item_raw_ids()[1:])
        return cls(encoder.user_matrix(dataset.users, dataset.num_users), encoder.sizes, item_year, item_genres,
                   posters, has_poster)


class NCF(nn.Layer):
    def __init__(self, features: Features, config: NCFConfig):
        super().__init__()
        self.config = config
        num_users, num_items = features.num_users + 1, features.num_items + 1
        # Row 0 is the unknown user: all zeros, so a new user is scored from side features alone.
        self.user_gmf = nn.Embedding(num_users, config.gmf_dim, padding_idx=0)
        self.item_gmf = nn.Embedding(num_items, config.gmf_dim)
        fused = config.gmf_dim
        if config.mlp:
            half = config.mlp_layers[0] // 2
            self.user_mlp = nn.Embedding(num_users, half, padding_idx=0)
            self.item_mlp = nn.Embedding(num_items, config.mlp_layers[0] - half)
            tower = []
            for width_in, width_out in zip(config.mlp_layers, config.mlp_layers[1:]):
                tower += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(config.dropout)]
            self.tower = nn.Sequential(*tower)
            fused += config.mlp_layers[-1]
        if config.side_features:
            self.user_side = nn.LayerList([nn.Embedding(size, config.side_dim) for size in features.feature_sizes])
            self.year_emb = nn.Embedding(YEAR_BUCKETS + 1, config.side_dim)
            self.genre_proj = nn.Linear(features.item_genres.shape[1], config.side_dim)
            fused += config.side_dim * (len(features.feature_sizes) + 2)
        if config.posters:
            self.poster_proj = nn.Linear(features.posters.shape[1], config.poster_dim)
            fused += config.poster_dim + 1
        self.fusion = nn.Sequential(nn.Linear(fused, config.fusion_hidden), nn.ReLU(),
                                    nn.Dropout(config.dropout), nn.Linear(config.fusion_hidden, 1))
        for name, array in (("item_year", features.item_year), ("item_genres", features.item_genres),
                            ("posters", features.posters), ("has_poster", features.has_poster)):
            self.register_buffer(name, paddle.to_tensor(array), persistable=False)

    def user_parts(self, users, user_features):
        """Everything that depends on the user alone: (gmf, mlp, side) embeddings."""
        side = None
        if self.config.side_features:
            side = paddle.concat([emb(user_features[:, j]) for j, emb in enumerate(self.user_side)], axis=-1)
        mlp = self.user_mlp(users) if self.config.mlp else None
        return self.user_gmf(users), mlp, side

    def item_side(self, items):
        """Everything fused that depends on the item alone (side features, poster)."""
        parts = []
        if self.config.side_features:
            parts += [self.year_emb(paddle.gather(self.item_year, items)),
                      self.genre_proj(paddle.gather(self.item_genres, items))]
        if self.config.posters:
            flag = paddle.gather(self.has_poster, items).unsqueeze(-1)
            parts += [self.poster_proj(paddle.gather(self.posters, items)) * flag, flag]
        return parts

    def forward(self, users, user_features, items):
        """Logits for aligned (user, item) pairs; `user_features` (B, 4) allows unknown users (id 0)."""
        return self.fusion(self.fusion_parts(users, user_features, items)).squeeze(-1)

    def fusion_parts(self, users, user_features, items):
        """What the fusion MLP reads: [GMF, MLP, user side, item side, poster] for each pair."""
        u_gmf, u_mlp, u_side = self.user_parts(users, user_features)
        parts = [u_gmf * self.item_gmf(items)]
        if u_mlp is not None:
            parts.append(self.tower(paddle.concat([u_mlp, self.item_mlp(items)], axis=-1)))
        if u_side is not None:
            parts.append(u_side)
        parts += self.item_side(items)
        return paddle.concat(parts, axis=-1)

    def export_scorer(self) -> NCFScorer:
        return export_scorer(self)


def _linear(layer) -> tuple[np.ndarray, np.ndarray]:
    return layer.weight.numpy().astype(np.float32), layer.bias.numpy().astype(np.float32)


def export_scorer(model: NCF) -> NCFScorer:
    """The numpy scorer of a trained model."""
    config = model.config
    with paddle.no_grad():
        items = paddle.arange(model.item_gmf.weight.shape[0], dtype="int64")
        item_side = model.item_side(items)
        item_side = paddle.concat(item_side, axis=-1).numpy() if item_side else None
    fusion_w, fusion_b = _linear(model.fusion[0])
    g, m = config.gmf_dim, (config.mlp_layers[-1] if config.mlp else 0)
    side_width = config.side_dim * len(model.user_side) if config.side_features else 0
    user_gmf = model.user_gmf.weight.numpy().copy()
    user_gmf[0] = 0.0  # the unknown user, as the padding row behaves in the model
    arrays = {
        "user_gmf": user_gmf,
        "item_gmf": model.item_gmf.weight.numpy(),
        "gmf_fusion": fusion_w[:g],
        "mlp_fusion": fusion_w[g:g + m],
        "user_side_fusion": fusion_w[g + m:g + m + side_width],
        "fusion_out_w": _linear(model.fusion[3])[0][:, 0],
        "fusion_out_b": _linear(model.fusion[3])[1],
        "num_user_side": np.array(len(model.user_side) if config.side_features else 0),
    }
    item_fusion = np.broadcast_to(fusion_b, (len(arrays["item_gmf"]), len(fusion_b))).copy()
    if item_side is not None:
        item_fusion += item_side @ fusion_w[g + m + side_width:]
    arrays["item_fusion"] = item_fusion
    if config.side_features:
        for j, emb in enumerate(model.user_side):
            arrays[f"user_side_{j}"] = emb.weight.numpy()
    arrays["tower_depth"] = np.array(-1)
    if config.mlp:
        # The tower's first layer acts on concat(user_mlp, item_mlp): split it by rows.
        first, *rest = [layer for layer in model.tower if isinstance(layer, nn.Linear)]
        w_first, b_first = _linear(first)
        half = model.user_mlp.weight.shape[1]
        user_mlp = model.user_mlp.weight.numpy().copy()
        user_mlp[0] = 0.0
        arrays["user_mlp_first"] = user_mlp @ w_first[:half]
        arrays["item_mlp_first"] = model.item_mlp.weight.numpy() @ w_first[half:] + b_first
        arrays["tower_depth"] = np.array(len(rest))
        for j, layer in enumerate(rest):
            arrays[f"tower_w{j}"], arrays[f"tower_b{j}"] = _linear(layer)
    return NCFScorer({k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
                          for k, v in arrays.items()})
