"""NCF in numpy, the serving form of the model (no Paddle import): everything that depends on
the item alone (its half of the tower's first layer, its side features and poster projection
through the fusion layer) is computed once at export (`model.export_scorer`), so scoring N
candidates is a few (N x 64) products."""

from __future__ import annotations


import numpy as np

from movierec.files import SavedArrays
from movierec.tables import grown


class NCFScorer(SavedArrays):
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
        self.join_item_rows()

    def join_item_rows(self) -> None:
        """One row per item holding its fusion, GMF and tower-input parts side by side: a request
        gathers each candidate's row once, where three tables would take three scattered reads."""
        parts = [self.item_fusion, self.item_gmf] + ([self.item_mlp_first] if self.has_mlp else [])
        self.item_rows = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
        self.gmf_columns = slice(self.item_fusion.shape[1], self.item_fusion.shape[1] + self.item_gmf.shape[1])

    def grow(self, count: int) -> None:
        """Room for `count` movies added while serving: each scored as the average movie."""
        for key in ("item_gmf", "item_mlp_first", "item_fusion"):
            if self.arrays.get(key) is not None:
                self.arrays[key] = grown(self.arrays[key], count, fill="mean")
        self.item_gmf, self.item_fusion = self.arrays["item_gmf"], self.arrays["item_fusion"]
        self.item_mlp_first = self.arrays.get("item_mlp_first")
        self.join_item_rows()

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
        return self.output(self.fusion_input(user, user_features, items))

    def output(self, fused: np.ndarray) -> np.ndarray:
        """The logits from the fusion layer's pre-activations (changed in place)."""
        np.maximum(fused, 0, out=fused)
        return fused @ self.fusion_out_w + self.fusion_out_b[0]

    def fusion_input(self, user: int, user_features: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(N, F) pre-activations of the fusion layer for `items`. The GMF product goes through
        the fusion layer as the item vectors times a user-scaled weight, (i * u) W = i (u W)."""
        u_gmf, u_mlp, u_side = self.user_state(user, user_features)
        rows = self.item_rows[items]
        gmf = self.gmf_columns
        fused = rows[:, :gmf.start] + u_side
        fused += rows[:, gmf] @ (u_gmf[:, None] * self.gmf_fusion)
        if self.has_mlp:
            hidden = rows[:, gmf.stop:] + u_mlp
            np.maximum(hidden, 0, out=hidden)
            for weight, bias in self.tower:
                hidden = hidden @ weight
                hidden += bias
                np.maximum(hidden, 0, out=hidden)
            fused += hidden @ self.mlp_fusion
        return fused

    def score_all(self, users: np.ndarray, user_features: np.ndarray) -> np.ndarray:
        """(len(users), num_items + 1) logits over the whole catalogue, for evaluation."""
        items = np.arange(len(self.item_gmf))
        return np.stack([self.score(u, f, items) for u, f in zip(users, user_features)])
