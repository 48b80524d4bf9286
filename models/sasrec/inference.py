"""SASRec's forward pass in numpy, for the request path (no Paddle import)."""

from __future__ import annotations

import math

import numpy as np

from .config import SASRecConfig


class SASRecInference:
    """The same forward pass in numpy for one sequence at a time, for the request path.

    A request that brings recent items needs one new user state; Paddle's eager dispatch costs
    far more than the arithmetic for a single sequence, so serving does it here from the saved
    weights. Only the last position's state is wanted, so the last block attends from it alone."""

    def __init__(self, weights: dict[str, np.ndarray], config: SASRecConfig):
        self.config = config
        self.w = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}
        # means over the hidden axis as a product with this vector: half of `ndarray.mean`'s
        # time or less at this size
        self._averaging = np.full(config.hidden, 1 / config.hidden, np.float32)
        self._causal = np.triu(np.full((config.maxlen, config.maxlen), -1e9, dtype=np.float32), 1)
        # per block, the query projection with the 1/sqrt(d) of the logits folded in, and the
        # key and value projections as one product
        scale = 1 / math.sqrt(config.hidden // config.heads)
        self._query = []
        self._key_value = []
        for block in range(config.blocks):
            prefix = f"attentions.{block}"
            self._query.append((self.w[f"{prefix}.q_proj.weight"] * scale, self.w[f"{prefix}.q_proj.bias"] * scale))
            self._key_value.append((
                np.concatenate([self.w[f"{prefix}.k_proj.weight"], self.w[f"{prefix}.v_proj.weight"]], axis=1),
                np.concatenate([self.w[f"{prefix}.k_proj.bias"], self.w[f"{prefix}.v_proj.bias"]])))

    @classmethod
    def from_model(cls, model) -> "SASRecInference":
        """From a trained `SASRec` (models/sasrec/model.py)."""
        return cls({name: value.numpy() for name, value in model.state_dict().items()}, model.config)

    def _norm(self, name: str, x: np.ndarray) -> np.ndarray:
        centred = x - (x @ self._averaging)[..., None]
        centred /= np.sqrt(np.square(centred) @ self._averaging + 1e-8)[..., None]
        return centred * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _attention(self, block: int, queries: np.ndarray, keys: np.ndarray, causal: bool) -> np.ndarray:
        heads, hidden = self.config.heads, self.config.hidden
        d = hidden // heads
        weight, bias = self._query[block]
        q = (queries @ weight + bias).reshape(len(queries), heads, d).transpose(1, 0, 2)
        weight, bias = self._key_value[block]
        key_value = keys @ weight + bias
        k = key_value[:, :hidden].reshape(len(keys), heads, d).transpose(1, 2, 0)
        v = key_value[:, hidden:].reshape(len(keys), heads, d).transpose(1, 0, 2)
        weights = q @ k
        if causal:
            weights += self._causal[:len(queries), :len(keys)]
        weights -= weights.max(-1, keepdims=True)
        np.exp(weights, out=weights)
        # normalised after the product with the values: (L, d) divisions instead of (L, L)
        out = (weights @ v) / weights.sum(-1, keepdims=True)
        return self._linear(f"attentions.{block}.out_proj", out.transpose(1, 0, 2).reshape(len(queries), hidden))

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


class SASRecUsers:
    """What SASRec knows of users when serving: the state after each stored history (computed
    offline), the numpy forward pass for a history with recent items, and the item embeddings
    that states score items with."""

    def __init__(self, states: np.ndarray, inference: SASRecInference):
        self.states = states            # (num_users + 1, d); row 0, the unknown user, unused
        self.inference = inference

    def query(self, user: int, sequence: np.ndarray, recent: int) -> np.ndarray | None:
        """The state after `sequence`, the user's history followed by `recent` recent items: the
        stored state when there are none; None for a user with nothing to go on."""
        if recent == 0:
            return self.states[user] if user > 0 else None
        return self.inference.user_vector(sequence)

    def scores(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.inference.w["item_emb.weight"][items] @ query
