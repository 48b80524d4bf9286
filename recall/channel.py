"""The recall-channel protocol: one source of candidates for a request.

A channel has a `name` (its key in `recall.channels.CHANNELS` and in the manifest), answers
`retrieve(context, k, allowed)` with at most k `Candidates` out of the `allowed` mask, best
first, and is a bundle component (`recall.component`): built offline, exported to its own
files, loaded back by the server without Paddle. A channel that does not apply to a request
(no state for a new user, no poster to start from) returns None: the merger then leaves its
quota out, where the quota of a channel that ran dry goes to the others.

`score(context, items)` gives the channel's own score of any items for the request (the score
`retrieve` ranks by; None where the channel does not apply): rankers see it for the items of
the popular and new slots' pools, which no channel was asked to retrieve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .component import BuildInputs, ComponentFiles
from .context import ItemMask, RequestContext


@dataclass
class Candidates:
    items: np.ndarray   # int64 contiguous item ids, best first
    scores: np.ndarray  # float32, the channel's own score

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.items)


def taste(vectors: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """The direction of the mean of `vectors[items]`: a query from items a user liked; None
    without items (or with a mean of zero)."""
    if len(items) == 0:
        return None
    query = vectors[items].mean(axis=0)
    norm = np.linalg.norm(query)
    return query / norm if norm > 0 else None


class RecallChannel(Protocol):
    name: str

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None: ...

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None: ...

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "RecallChannel | None":
        """Offline, from trained runs and data; None when its source is missing (the build
        leaves the channel out and says so)."""

    def export(self, files: ComponentFiles) -> dict:
        """Write the channel's files; returns what the manifest records of it (its parameters,
        dimensions, sources)."""

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "RecallChannel":
        """From the files `export` wrote and the manifest fragment it returned."""
