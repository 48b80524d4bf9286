"""`recall`: no second model; candidates in the order of one recall channel's own score
(parameter `channel`, default `sasrec`). Candidates that channel did not propose follow, in
the merge order. Over the merged candidates this is that channel's own list with every other
channel's candidates placed where it would score them. The baseline a learned ranker has to
beat, and the order to serve while none does."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from movierec.options import option
from movierec.rank.ranker import HEAD_CHANNEL, channel_logits
from movierec.recall.component import AddedItems, BuildInputs, ComponentFiles, parse_params
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged


@dataclass
class RecallParams:
    channel: str = option(HEAD_CHANNEL, "The recall channel whose score orders the candidates.")


class RecallRanker:
    name = "recall"
    head = 0
    scores_head = False

    def __init__(self, params: RecallParams):
        self.params = params
        self.signals = (params.channel,)

    def score(self, context: RequestContext, merged: Merged) -> np.ndarray | None:
        return channel_logits(merged, self.params.channel)

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "RecallRanker":
        settings = parse_params(RecallParams, params, cls.name)
        inputs.need_channel(settings.channel, "the recall ranker")
        return cls(settings)

    def grow(self, added: AddedItems) -> None:
        """Nothing per movie: the channel's own scores order them."""

    def export(self, files: ComponentFiles) -> dict:
        return {"params": asdict(self.params)}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "RecallRanker":
        return cls(parse_params(RecallParams, fragment["params"], cls.name))
