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
        prefix = f"attentions.{block}"
        heads = self.config.heads
        d = self.config.hidden // heads
        q = self._linear(f"{prefix}.q_proj", queries).reshape(len(queries), heads, d).transpose(1, 0, 2)
        k = self._linear(f"{prefix}.k_proj", keys).reshape(len(keys), heads, d).transpose(1, 0, 2)
        v = self._linear(f"{prefix}.v_proj", keys).reshape(len(keys), heads, d).transpose(1, 0, 2)
        logits = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        if causal:
            logits += self._causal[:len(queries), :len(keys)]
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
