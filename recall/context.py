"""What one request brings to recall and rank, built once per request.

`ItemMask` is the one mask type over the catalogue: a boolean per contiguous item id (index 0
is padding and never an item). `RequestContext` carries the user's stored history with its
ratings, the request's recent items, the encoded side features (`dataset.features`), and two
masks: `blocked` (what must never come back: the history, recent and excluded items) and
`allowed` (what may be returned: not blocked, and passing the request's filters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from movierec.dataset.sequences import Histories

NO_ITEMS = np.zeros(0, dtype=np.int64)
RECENT_RATING = 5  # a request's recent items count as well liked


class ItemMask:
    """A boolean array over item ids 0..num_items. Vector indexes turn it into their own
    selector, once per mask (`memo`), however many channels search with it."""

    __slots__ = ("array", "_memo")

    def __init__(self, array: np.ndarray):
        self.array = array
        self._memo: dict = {}

    @classmethod
    def of(cls, num_items: int, *item_lists: np.ndarray) -> "ItemMask":
        """True at every item of `item_lists`, and at padding 0."""
        array = np.zeros(num_items + 1, dtype=bool)
        array[0] = True
        for items in item_lists:
            array[items] = True
        return cls(array)

    def __invert__(self) -> "ItemMask":
        return ItemMask(~self.array)

    def __and__(self, other: "ItemMask") -> "ItemMask":
        return ItemMask(self.array & other.array)

    def __len__(self) -> int:
        return len(self.array)

    def memo(self, key: str, make):
        """`make()`, computed once for this mask."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


@dataclass
class RequestContext:
    user: int                    # contiguous user id; 0 = a user the bundle does not know
    history: np.ndarray          # the stored history, oldest first
    history_ratings: np.ndarray  # its ratings
    recent: np.ndarray           # the request's recent items the bundle knows, oldest first
    user_features: np.ndarray    # (4,) codes of `dataset.features.USER_FEATURES`
    blocked: ItemMask            # never returned: padding, history, recent, excluded
    allowed: ItemMask            # may be returned: not blocked, and passing the filters
    recent_ratings: np.ndarray | None = None  # the recent items' ratings where known (else RECENT_RATING)
    memo: dict = field(default_factory=dict, repr=False)  # per-request work of the components, made once

    @classmethod
    def build(cls, num_items: int, histories: Histories, user: int, user_features: np.ndarray,
              recent: np.ndarray = NO_ITEMS, exclude: np.ndarray = NO_ITEMS,
              filters: ItemMask | None = None, recent_ratings: np.ndarray | None = None) -> "RequestContext":
        """A user with no history (one whose ratings all came after a bundle's time cut) is served
        as a new user with the given side features: the context's user is 0."""
        history = histories.of(user) if user else NO_ITEMS
        if not len(history):
            user = 0
        ratings = histories.ratings_of(user) if user else np.zeros(0, dtype=np.int8)
        blocked = ItemMask.of(num_items, history, recent, exclude)
        allowed = ~blocked if filters is None else (~blocked) & filters
        return cls(user, history, ratings, recent, user_features, blocked, allowed, recent_ratings)

    def once(self, key: str, make):
        """`make()`, computed once per request: a channel's query serves its retrieval and its
        scores for a ranker alike."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    @cached_property
    def sequence(self) -> np.ndarray:
        """The history followed by the recent items."""
        return np.concatenate([self.history, self.recent]) if len(self.recent) else self.history

    @cached_property
    def sequence_ratings(self) -> np.ndarray:
        """Ratings aligned with `sequence` (recent items without a known rating as RECENT_RATING)."""
        if not len(self.recent):
            return self.history_ratings
        recent = self.recent_ratings if self.recent_ratings is not None else np.full(len(self.recent), RECENT_RATING)
        return np.concatenate([self.history_ratings, recent])
