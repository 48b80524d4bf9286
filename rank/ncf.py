"""NCF ranker: NeuMF (GMF + MLP) late-fused with side features and poster vectors, in Paddle.

score(u, i) = f([ GMF(u, i), MLP(u, i), user side(u), item side(i), poster(i), has_poster(i) ])

- GMF: user ⊙ item embeddings; MLP: separate embeddings through a ReLU tower (64-32-16).
- user side: gender, age bucket, occupation, zip prefix embeddings; item side: release-year
  bucket embedding and a learned projection of the 18 genres; poster: the poster vector
  projected by a learned layer, zero with the presence flag off where a movie has none.
- f: a small ReLU MLP to one logit.

Trained for ranking: implicit positives from the ratings with sampled negatives (uniform or
popularity-weighted), BCE or BPR. `NCFScorer` is the serving form: numpy, with everything that
depends on the item alone (its MLP and fusion contributions, the poster projection) computed
once, so scoring N candidates is a few small matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from movierec.dataset.evaluation import EvalTask, evaluate
from movierec.dataset.sequences import Sequences
from movierec.recall.posters import load_posters
from movierec.training import (CheckpointError, RunDir, TrainState, check_lr_schedule, fit,
                               load_model_weights, optimise_epoch)

LOSSES = ("bce", "bpr")
SAMPLERS = ("uniform", "popularity")
USER_FEATURE_COLUMNS = ("gender_idx", "age_idx", "occupation_idx", "zip_prefix_idx")
YEAR_BUCKETS = 20  # 5-year buckets from 1915; 0 = unknown year


@dataclass
class NCFConfig:
    gmf_dim: int = 32
    mlp_layers: tuple = (64, 32, 16)
    side_dim: int = 8
    poster_dim: int = 16
    fusion_hidden: int = 32
    dropout: float = 0.2
    mlp: bool = True              # False: GMF path only (the ablation baseline)
    side_features: bool = True
    posters: bool = True
    lr: float = 1e-3
    batch_size: int = 1024
    epochs: int = 30
    num_negatives: int = 4
    sampler: str = "uniform"
    loss: str = "bce"
    patience: int = 5
    lr_decay: float = 1.0         # lr times this after lr_patience evaluations without
    lr_patience: int = 3          # improvement (1.0: constant lr)
    eval_every: int = 1
    monitor: str = "sampled.HR@10"
    seed: int = 42

    def __post_init__(self) -> None:
        self.mlp_layers = tuple(int(x) for x in self.mlp_layers)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if len(self.mlp_layers) < 2 or min(self.mlp_layers) <= 0:
            raise ValueError("mlp_layers must be two or more positive sizes, e.g. 64,32,16")
        for name in ("gmf_dim", "side_dim", "poster_dim", "fusion_hidden", "batch_size", "epochs",
                     "num_negatives", "patience", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        check_lr_schedule(self.lr_decay, self.lr_patience)


def year_bucket(years: np.ndarray) -> np.ndarray:
    years = np.asarray(years)
    return np.where(years > 0, np.clip((years - 1915) // 5 + 1, 1, YEAR_BUCKETS), 0).astype(np.int64)


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
    def from_dataset(cls, dataset, poster_vectors=None) -> "Features":
        users = dataset.users.sort_values("user")
        user_features = np.zeros((dataset.num_users + 1, len(USER_FEATURE_COLUMNS)), dtype=np.int64)
        user_features[users.user.to_numpy()] = users[list(USER_FEATURE_COLUMNS)].to_numpy()
        vocab = dataset.manifest["vocabularies"]
        sizes = tuple(len(vocab[c.removesuffix("_idx")]) + 1 for c in USER_FEATURE_COLUMNS)
        items = dataset.items.sort_values("item")
        item_year = np.zeros(dataset.num_items + 1, dtype=np.int64)
        item_year[items.item.to_numpy()] = year_bucket(items.year.to_numpy())
        if poster_vectors is not None:
            raw, present = poster_vectors.aligned(dataset.item_raw_ids()[1:])
            posters = np.zeros((dataset.num_items + 1, raw.shape[1]), dtype=np.float32)
            has_poster = np.zeros(dataset.num_items + 1, dtype=np.float32)
            if present.any():
                # Raw CNN features share a large common component; centring spreads them out.
                centred = raw[present] - raw[present].mean(axis=0)
                centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-8)
                posters[1:][present] = centred
                has_poster[1:][present] = 1.0
        else:
            posters = np.zeros((dataset.num_items + 1, 1), dtype=np.float32)
            has_poster = np.zeros(dataset.num_items + 1, dtype=np.float32)
        return cls(user_features, sizes, item_year, dataset.genre_matrix(), posters, has_poster)


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
        u_gmf, u_mlp, u_side = self.user_parts(users, user_features)
        parts = [u_gmf * self.item_gmf(items)]
        if u_mlp is not None:
            parts.append(self.tower(paddle.concat([u_mlp, self.item_mlp(items)], axis=-1)))
        if u_side is not None:
            parts.append(u_side)
        parts += self.item_side(items)
        return self.fusion(paddle.concat(parts, axis=-1)).squeeze(-1)

    def export_scorer(self) -> "NCFScorer":
        return NCFScorer.from_model(self)


def _linear(layer) -> tuple[np.ndarray, np.ndarray]:
    return layer.weight.numpy().astype(np.float32), layer.bias.numpy().astype(np.float32)


class NCFScorer:
    """NCF in numpy for serving: item-only work precomputed, N candidates scored at once.

    Saved and loaded as one `.npz` of plain arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        a = arrays
        self.user_gmf, self.item_gmf = a["user_gmf"], a["item_gmf"]
        self.has_mlp = int(a["tower_depth"]) >= 0
        self.user_mlp_first = a.get("user_mlp_first")  # (U+1, H0): user part of the tower's first layer
        self.item_mlp_first = a.get("item_mlp_first")  # (I+1, H0): item part, bias included
        self.item_fusion = a["item_fusion"]            # (I+1, F): item side + poster through fusion layer 1
        self.user_side_tables = [a[f"user_side_{j}"] for j in range(int(a["num_user_side"]))]
        self.user_side_fusion = a["user_side_fusion"]  # (S, F)
        self.gmf_fusion, self.mlp_fusion = a["gmf_fusion"], a["mlp_fusion"]
        self.tower = [(a[f"tower_w{j}"], a[f"tower_b{j}"]) for j in range(max(int(a["tower_depth"]), 0))]
        self.fusion_out_w, self.fusion_out_b = a["fusion_out_w"], a["fusion_out_b"]

    @classmethod
    def from_model(cls, model: NCF) -> "NCFScorer":
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
        return cls({k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
                    for k, v in arrays.items()})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **self.arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "NCFScorer":
        with np.load(path, allow_pickle=False) as data:
            return cls({name: data[name] for name in data.files})

    def recall_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user queries, item vectors) for an inner-product recall channel on the GMF path.

        The GMF product reaches the score through the fusion MLP; taking that MLP as linear
        (all units active), it contributes <u ⊙ h, i> with h = W_gmf w_out, so u ⊙ h is the
        query that ranks items by the GMF path's share of the score."""
        h = self.gmf_fusion @ self.fusion_out_w
        return (self.user_gmf * h).astype(np.float32), self.item_gmf.astype(np.float32)

    def user_state(self, user: int, user_features: np.ndarray) -> tuple:
        side = np.zeros(self.item_fusion.shape[1], dtype=np.float32)
        if self.user_side_tables:
            embedded = np.concatenate([t[f] for t, f in zip(self.user_side_tables, user_features)])
            side = embedded @ self.user_side_fusion
        return self.user_gmf[user], self.user_mlp_first[user] if self.has_mlp else None, side

    def score(self, user: int, user_features: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Logits of `items` (contiguous ids) for one user; user 0 = unknown (side features only)."""
        u_gmf, u_mlp, u_side = self.user_state(user, user_features)
        fused = self.item_fusion[items] + u_side + (self.item_gmf[items] * u_gmf) @ self.gmf_fusion
        if self.has_mlp:
            hidden = np.maximum(self.item_mlp_first[items] + u_mlp, 0)
            for weight, bias in self.tower:
                hidden = np.maximum(hidden @ weight + bias, 0)
            fused += hidden @ self.mlp_fusion
        np.maximum(fused, 0, out=fused)
        return fused @ self.fusion_out_w + self.fusion_out_b[0]

    def score_all(self, users: np.ndarray, user_features: np.ndarray) -> np.ndarray:
        """(len(users), num_items + 1) logits over the whole catalogue, for evaluation."""
        items = np.arange(len(self.item_gmf))
        return np.stack([self.score(u, f, items) for u, f in zip(users, user_features)])


class PairSampler:
    """Training pairs: every (user, train item) positive with `num_negatives` sampled negatives."""

    def __init__(self, train: Sequences, num_items: int, sampler: str):
        self.num_items = num_items
        self.users = np.repeat(np.arange(train.num_users), train.lengths())
        self.items = train.items
        self.seen = np.zeros((train.num_users, num_items + 1), dtype=bool)
        self.seen[self.users, self.items] = True
        counts = np.bincount(self.items, minlength=num_items + 1).astype(np.float64)
        counts[0] = 0
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
            raise ValueError("a user has interacted with every item: no negative can be sampled")
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


def train_ncf(train: Sequences, features: Features, config: NCFConfig, run_dir: str | Path,
              valid_task: EvalTask, progress=None, on_epoch=None) -> tuple[NCF, TrainState]:
    run = RunDir(run_dir)
    model = build_model(features, config)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=model.parameters())
    pairs = PairSampler(train, features.num_items, config.sampler)
    user_features = features.user_features
    steps = math.ceil(len(pairs.users) / config.batch_size)

    def batch_losses(rng):
        k = config.num_negatives
        for users, positives in pairs.epoch(config.batch_size, rng):
            negatives = pairs.negatives(users, k, rng)
            if config.loss == "bce":
                all_users = np.concatenate([users, np.repeat(users, k)])
                all_items = np.concatenate([positives, negatives.reshape(-1)])
                labels = np.concatenate([np.ones(len(users)), np.zeros(len(users) * k)]).astype(np.float32)
                logits = model(paddle.to_tensor(all_users), paddle.to_tensor(user_features[all_users]),
                               paddle.to_tensor(all_items))
                loss = F.binary_cross_entropy_with_logits(logits, paddle.to_tensor(labels))
            else:
                pos = model(paddle.to_tensor(users), paddle.to_tensor(user_features[users]),
                            paddle.to_tensor(positives))
                rep = np.repeat(users, k)
                neg = model(paddle.to_tensor(rep), paddle.to_tensor(user_features[rep]),
                            paddle.to_tensor(negatives.reshape(-1))).reshape([-1, k])
                loss = -F.log_sigmoid(pos.unsqueeze(-1) - neg).mean()
            yield loss, len(users)

    def train_epoch(epoch: int) -> float:
        rng = np.random.default_rng([config.seed, epoch])
        return optimise_epoch(optimizer, batch_losses(rng), progress(steps, f"epoch {epoch}") if progress else None)

    def validate() -> dict:
        return evaluate(ncf_scorer_for_eval(model.export_scorer(), features), valid_task)

    state = fit(run, model, optimizer, config, train_epoch, validate, on_epoch)
    load_model_weights(model, run.best_model if run.best_model.is_file() else run.last_model)
    model.eval()
    return model, state


POSTERS_FILE = "posters.npz"


def read_run_config(run_dir: str | Path) -> NCFConfig:
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise CheckpointError(f"{run_dir} holds no NCF run (no config.json)")
    try:
        return NCFConfig(**run.read_config())
    except TypeError as exc:
        raise CheckpointError(f"{run_dir} is not an NCF run ({exc})") from exc


def run_features(dataset, run_dir: str | Path, config: NCFConfig) -> Features:
    """The features a run was trained with: its poster vectors travel inside the run directory."""
    posters = load_posters(Path(run_dir) / POSTERS_FILE) if config.posters else None
    return Features.from_dataset(dataset, posters)


def load_ncf(run_dir: str | Path, features: Features, which: str = "best") -> NCF:
    run = RunDir(run_dir)
    model = NCF(features, read_run_config(run_dir))
    load_model_weights(model, run.best_model if which == "best" else run.last_model)
    model.eval()
    return model


