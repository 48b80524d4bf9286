"""The recall stage of one request: every configured channel, then the merger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .channel import Candidates, RecallChannel
from .context import RequestContext
from .merge import Merged, merge

DEFAULT_QUOTAS = {"sasrec": 200, "ncf": 50, "poster": 20, "item2item": 30}
OVERFETCH = 2


@dataclass
class Recaller:
    channels: list[RecallChannel]   # in merge order
    quotas: dict[str, int]          # candidates each channel contributes to the merged list

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(channel.name for channel in self.channels)

    def retrieve(self, context: RequestContext, quotas: dict[str, int] | None = None) -> list[Candidates | None]:
        """Each channel's list, aligned with `channels`: twice its quota long, so the merger
        can still fill the quota after dropping what an earlier channel took; None for a
        channel without quota or that does not apply to the request."""
        quotas = quotas or self.quotas
        return [channel.retrieve(context, OVERFETCH * quotas[channel.name], context.allowed)
                if quotas.get(channel.name) else None for channel in self.channels]

    def score_items(self, context: RequestContext, items: np.ndarray, only: tuple | None = None) -> Merged:
        """`items` (that no channel retrieved) with each channel's own score of them (or only of
        the channels named in `only`), as a ranker sees candidates; their ranks are -1."""
        pool = Merged.unproposed(self.names, items)
        for column, channel in enumerate(self.channels):
            if only is not None and channel.name not in only:
                continue
            scores = channel.score(context, items)
            if scores is not None:
                pool.scores[:, column] = scores
        return pool

    def recall(self, context: RequestContext,
               quotas: dict[str, int] | None = None) -> tuple[Merged, list[Candidates | None]]:
        """Merged candidates out of the context's allowed items: never a seen, recent or excluded
        item, and only items that pass the request's filters."""
        quotas = quotas or self.quotas
        results = self.retrieve(context, quotas)
        return merge(self.names, results, quotas, context.allowed), results
