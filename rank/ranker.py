"""The ranker protocol, and the rank stage of a request.

A ranker scores a request's merged candidates, `score(context, merged) -> logits` (higher is
better), from anything in the context (the user's history, the recent items, the side
features) and in `Merged` (each channel's score and rank per candidate), or returns None when
it has nothing to go on for the request (then the candidates keep the recall order). It is a
bundle component like a channel (`recall.component`). `rank` orders the candidates by the
logits; the score a caller sees is their sigmoid. The same scores order the popular and new
slots' pools for the user (`order_pool`, `order_pools`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from movierec.recall.component import BuildInputs, ComponentFiles
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged
from movierec.recall.recaller import Recaller

HEAD_CHANNEL = "sasrec"   # the channel whose order a cascade's head follows (`head_rows`)


class Ranker(Protocol):
    name: str
    signals: tuple | None   # the channels whose scores it reads (None: all of them)
    head: int               # a cascade's head (`cascade`): the candidates it scores itself; 0: all
    scores_head: bool       # every channel it reads scores each candidate of the head (`score_head`)

    def score(self, context: RequestContext, merged: Merged) -> np.ndarray | None: ...

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


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # a logit of -inf (nothing to score with) is a probability of 0
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def channel_logits(merged: Merged, channel: str) -> np.ndarray | None:
    """One recall channel's scores of the candidates as logits (-inf where it scored none), or
    None where it scored none of them."""
    if channel not in merged.channels:
        return None
    scores = merged.scores[:, merged.channels.index(channel)]
    if np.isnan(scores).all():
        return None
    return np.where(np.isnan(scores), -np.inf, scores).astype(np.float32)


def _recall_order(merged: Merged, keep: int, channel: str) -> np.ndarray | None:
    """The candidates' rows, best first in `channel`'s order (a stable sort of its logits), or
    None where there is no head: every candidate is in it, or the channel scored none of them."""
    if not 0 < keep < len(merged.items):
        return None
    logits = channel_logits(merged, channel)
    return None if logits is None else np.argsort(-logits, kind="stable")


def head_rows(merged: Merged, keep: int, channel: str = HEAD_CHANNEL) -> np.ndarray | None:
    """A cascade's head: the positions, in merge order, of the `keep` candidates `channel`
    scores highest (the recall order); None when every candidate is in it, or when the channel
    scored none of them (a new user's): no order to cut by."""
    order = _recall_order(merged, keep, channel)
    return None if order is None else np.sort(order[:keep])


def cascade(score_head, merged: Merged, keep: int, channel: str = HEAD_CHANNEL) -> np.ndarray:
    """Logits of a ranker that scores only the head of the recall order (`score_head(merged)`
    on `head_rows`); the others follow below the head, in the recall order."""
    order = _recall_order(merged, keep, channel)
    if order is None:
        return score_head(merged)
    head, tail = np.sort(order[:keep]), order[keep:]
    logits = np.empty(len(merged.items), np.float32)
    head_logits = score_head(merged.subset(head))
    logits[head] = head_logits
    floor = head_logits[np.isfinite(head_logits)].min(initial=0.0)
    logits[tail] = floor - 1.0 - np.arange(len(tail), dtype=np.float32)
    return logits


def fill_scores(context: RequestContext, recaller: Recaller, merged: Merged, rows: np.ndarray | None = None,
                only: tuple | None = None) -> Merged:
    """`merged` with each channel's score (or only the channels in `only`) of the candidates at
    `rows` (all of them by default) that it did not propose, from the channel itself
    (`Recaller.score_items`); ranks stay -1 where it did not propose the candidate."""
    rows = np.arange(len(merged.items)) if rows is None else rows
    block = merged.scores[rows]
    missing = np.isnan(block).any(axis=0)
    names = tuple(name for name, absent in zip(merged.channels, missing) if absent and (only is None or name in only))
    if not names or not len(rows):
        return merged
    scored = recaller.score_items(context, merged.items[rows], names).scores
    scores = merged.scores.copy()
    scores[rows] = np.where(np.isnan(block), scored, block)
    return Merged(merged.channels, merged.items, merged.primary, scores, merged.ranks)


def score_head(ranker: Ranker, context: RequestContext, recaller: Recaller, merged: Merged) -> Merged:
    """The candidates as a ranker with `scores_head` reads them: every channel it reads has
    scored each candidate of its cascade's head (`head_rows`; every candidate without one),
    not only those the channel proposed, trained and served alike."""
    if not ranker.scores_head or not len(merged.items):
        return merged
    return fill_scores(context, recaller, merged, head_rows(merged, ranker.head), ranker.signals)


def rank(ranker: Ranker, context: RequestContext, recaller: Recaller, merged: Merged) -> Ranked:
    logits = ranker.score(context, score_head(ranker, context, recaller, merged))
    if logits is None:  # nothing to score with: the recall order
        logits = -np.arange(len(merged.items), dtype=np.float32)
    order = np.argsort(-logits, kind="stable")
    return Ranked(merged.channels, merged.items[order], _sigmoid(logits[order]), merged.proposed[order])


def best_first(logits: np.ndarray, keep: int) -> np.ndarray:
    """The positions of the `keep` highest logits, highest first, ties in position order: the
    head of a stable sort, without sorting the rest."""
    if keep >= len(logits):
        return np.argsort(-logits, kind="stable")
    threshold = np.partition(logits, len(logits) - keep)[len(logits) - keep]
    head = np.flatnonzero(logits >= threshold)
    return head[np.argsort(-logits[head], kind="stable")][:keep]


def pool_signals(ranker: Ranker, context: RequestContext, recaller: Recaller, items: np.ndarray) -> Merged:
    """A pool's items as the ranker sees candidates: no channel retrieved them, so each
    channel scores them itself (`Recaller.score_items`). With a cascade's head, the head's
    channel scores them all first and the other channels only the head, the one part of the
    pool whose other scores the ranker reads."""
    keep = ranker.head
    if not 0 < keep < len(items) or (ranker.signals is not None and HEAD_CHANNEL not in ranker.signals):
        return recaller.score_items(context, items, ranker.signals)
    pool = recaller.score_items(context, items, (HEAD_CHANNEL,))
    # no head where the head's channel scored none of them (`head_rows`): every row is filled
    others = tuple(name for name in (ranker.signals or recaller.names) if name != HEAD_CHANNEL)
    return fill_scores(context, recaller, pool, head_rows(pool, keep), others)


def order_pool(ranker: Ranker, context: RequestContext, recaller: Recaller, items: np.ndarray,
               keep: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The first `keep` items of a slot's pool in the ranker's order for this request, with the
    scores a caller sees; None when the ranker cannot score the request (`pool_signals`)."""
    logits = ranker.score(context, pool_signals(ranker, context, recaller, items))
    if logits is None:
        return None
    order = best_first(logits, keep)
    return items[order], _sigmoid(logits[order])


def order_pools(ranker: Ranker, context: RequestContext, recaller: Recaller, pools: dict[str, np.ndarray],
                keep: int) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """`order_pool` for each of several pools (of items the context's mask covers), their items
    scored together in one call (a ranker's score of an item does not depend on the items
    scored beside it)."""
    # the union of the pools and each item's row in it through a table over item ids: a few
    # microseconds, where np.unique and searchsorted over ~800 ids cost a tenth of a request
    in_union = np.zeros(len(context.allowed.array), dtype=bool)
    for pool in pools.values():
        in_union[pool] = True
    items = np.flatnonzero(in_union)
    row_of = np.empty(len(in_union), dtype=np.int64)
    row_of[items] = np.arange(len(items))
    logits = ranker.score(context, pool_signals(ranker, context, recaller, items)) if len(items) else None
    out = {}
    for slot, pool in pools.items():
        if logits is None or not len(pool):
            out[slot] = None
            continue
        pool_logits = logits[row_of[pool]]
        order = best_first(pool_logits, keep)
        out[slot] = pool[order], _sigmoid(pool_logits[order])
    return out
