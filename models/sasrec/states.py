"""Users' SASRec states for a build: in this process, or over shards of users on a cluster
(`build --build-cluster`), each worker rebuilding the model from the weights it is sent once.

Both paths run `SASRec.user_vectors` on the same batches (users in order of history length,
1,024 at a time; a shard is a whole number of batches), so both give the same states.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict

import numpy as np

from movierec.shards import map_shards

from .config import SASRecConfig
from .model import SASRec

BATCH = 1024
SHARD = 16 * BATCH
_MODELS: dict = {}   # in each worker: build key -> model


def user_states(model: SASRec, sequences: list, cluster: str = "") -> np.ndarray:
    """The state after each of `sequences`: (len(sequences), hidden)."""
    if not cluster:
        return model.user_vectors(sequences, batch_size=BATCH)
    order = np.argsort([len(sequence) for sequence in sequences], kind="stable")
    rows = [order[start:start + SHARD] for start in range(0, len(order), SHARD)]
    weights = {name: value.numpy() for name, value in model.state_dict().items()}
    shared = (uuid.uuid4().hex, model.num_items, asdict(model.config), weights, BATCH)
    parts = map_shards(cluster, shard_states, shared, [([sequences[row] for row in shard],) for shard in rows])
    states = np.empty((len(sequences), model.config.hidden), dtype=np.float32)
    for shard, part in zip(rows, parts):
        states[shard] = part
    return states


def shard_states(key: str, num_items: int, config: dict, weights: dict, batch: int, sequences: list) -> np.ndarray:
    """In a worker: the states after `sequences`, which come in order of length."""
    if key not in _MODELS:
        _MODELS.clear()
        model = SASRec(num_items, SASRecConfig(**config))
        model.set_state_dict(weights)
        _MODELS[key] = model
    return _MODELS[key].user_vectors(sequences, batch_size=batch)
