"""The recall stage for one request: every channel, then the merger."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from movierec.dataset.sequences import Sequences

from .channels import Candidates, Merged, item2item, mean_poster_query, merge, search
from .index import AllowedItems, ItemIndex
from .sasrec import SASRecInference

DEFAULT_QUOTAS = {"sasrec": 200, "ncf": 50, "poster": 20, "item2item": 30}
OVERFETCH = 2


@dataclass
class Recaller:
    seen: Sequences                    # each user's stored history, chronological
    seen_ratings: np.ndarray           # ratings aligned with seen.items
    sasrec_index: ItemIndex
    sasrec_users: np.ndarray           # (num_users + 1, d) states after each stored history
    sasrec: SASRecInference            # for request-time sequences
    ncf_index: ItemIndex
    ncf_users: np.ndarray              # (num_users + 1, d) GMF user embeddings
    poster_index: ItemIndex | None
    posters: np.ndarray                # (num_items + 1, P) normalised poster vectors
    has_poster: np.ndarray
    neighbour_ids: np.ndarray
    neighbour_scores: np.ndarray
    quotas: dict = field(default_factory=lambda: dict(DEFAULT_QUOTAS))

    def history(self, user: int) -> np.ndarray:
        return self.seen.of(user) if user > 0 else np.zeros(0, dtype=np.int64)

    def sasrec_query(self, user: int, recent: np.ndarray) -> np.ndarray | None:
        """The stored state, or one recomputed from the stored history plus the recent items."""
        if len(recent) == 0:
            return self.sasrec_users[user] if user > 0 else None
        return self.sasrec.user_vector(np.concatenate([self.history(user), recent]))

    def channels(self, user: int, recent: np.ndarray, allowed: AllowedItems,
                 quotas: dict[str, int]) -> list[Candidates]:
        """Each channel's list of allowed items, twice its quota long so the merger can still
        fill the quota after dropping what an earlier channel took."""
        quotas = {name: OVERFETCH * quota for name, quota in quotas.items()}
        history = self.history(user)
        sequence = np.concatenate([history, recent])
        results = []
        query = self.sasrec_query(user, recent)
        if query is not None and quotas.get("sasrec"):
            results.append(search(self.sasrec_index, query, quotas["sasrec"], allowed, "sasrec"))
        if user > 0 and quotas.get("ncf"):
            results.append(search(self.ncf_index, self.ncf_users[user], quotas["ncf"], allowed, "ncf"))
        if self.poster_index is not None and quotas.get("poster"):
            ratings = np.concatenate([self.seen_ratings[self.seen.indptr[user]:self.seen.indptr[user + 1]]
                                      if user > 0 else np.zeros(0), np.full(len(recent), 5)])
            poster_query = mean_poster_query(self.posters, self.has_poster, sequence, ratings)
            if poster_query is not None:
                results.append(search(self.poster_index, poster_query, quotas["poster"], allowed, "poster"))
        if quotas.get("item2item"):
            results.append(item2item(self.neighbour_ids, self.neighbour_scores, sequence, quotas["item2item"], allowed))
        return results

    def blocked(self, user: int, *item_lists: np.ndarray) -> np.ndarray:
        """Mask over item ids of what must not come back: padding, the history, the given lists."""
        mask = np.zeros(len(self.has_poster), dtype=bool)
        mask[0] = True
        mask[self.history(user)] = True
        for items in item_lists:
            mask[items] = True
        return mask

    def recall(self, user: int, recent: np.ndarray | None = None, exclude: np.ndarray | None = None,
               quotas: dict[str, int] | None = None) -> tuple[Merged, list[Candidates]]:
        """Merged candidates for `user` (0 = unknown); seen, recent and excluded items never come out."""
        recent = np.asarray(recent if recent is not None else [], dtype=np.int64)
        exclude = np.asarray(exclude if exclude is not None else [], dtype=np.int64)
        blocked = self.blocked(user, recent, exclude)
        quotas = quotas or self.quotas
        results = self.channels(user, recent, AllowedItems(~blocked), quotas)
        return merge(results, quotas, blocked), results
