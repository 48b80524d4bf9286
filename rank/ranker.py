"""The ranker protocol, and the rank stage of a request.

A ranker scores a request's merged candidates, `score(context, merged) -> logits` (higher is
better), from anything in the context (the user's history, the recent items, the side
features) and in `Merged` (each channel's score and rank per candidate). It is a bundle
component like a channel (`recall.component`). `rank` orders the candidates by the logits;
the score a caller sees is their sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from movierec.recall.component import BuildInputs, ComponentFiles
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged


class Ranker(Protocol):
    name: str

    def score(self, context: RequestContext, merged: Merged) -> np.ndarray: ...

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "Ranker": ...

    def export(self, files: ComponentFiles) -> dict: ...

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "Ranker": ...


@dataclass
class Ranked:
    """One user's candidates, best first."""

    channels: tuple            # recall channel names, the columns of `proposed`
    items: np.ndarray          # int64 contiguous item ids
    scores: np.ndarray         # float32 in (0, 1): the sigmoid of the ranker's logit
    proposed: np.ndarray       # (N, C) bool: the recall channels that proposed each item


def rank(ranker: Ranker, context: RequestContext, merged: Merged) -> Ranked:
    logits = ranker.score(context, merged)
    order = np.argsort(-logits, kind="stable")
    probabilities = (1.0 / (1.0 + np.exp(-logits[order]))).astype(np.float32)
    return Ranked(merged.channels, merged.items[order], probabilities, merged.proposed[order])
