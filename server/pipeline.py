"""One Recommend request, end to end: recall -> rank -> quota blending.

Everything here works on numpy arrays over the catalogue; the server only translates
between protobuf and these dataclasses. Each request builds one `RequestContext` that recall,
rank and the blender share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from movierec.blend.popularity import DemographicPopularity
from movierec.blend.lists import SLOT_POOL
from movierec.blend.quotas import DEFAULT_SHARES, MAX_N, SLOTS, SlotList, blend
from movierec.bundle.loader import Bundle
from movierec.dataset.sequences import item_counts
from movierec.errors import MovieRecError, echo
from movierec.rank.precomputed import UserRanking
from movierec.rank.ranker import order_pool, order_pools, rank
from movierec.recall.component import AddedItems
from movierec.recall.context import NO_ITEMS, RECENT_RATING, ItemMask, RequestContext

from .catalogue import ServedCatalogue

MAX_LIST = 1000  # recent / exclude ids per request
SLOT_ORDERS = ("personal", "global")
POPULAR_AMONG = "personalized, popular among"   # in a request's slot orders: where a user without candidates' list came from
LIST_ORDERS = ("score", "slots")  # the served list: by the ranker's score where it ordered every slot, or slot by slot


class RequestError(MovieRecError):
    """A request that cannot be answered as asked (INVALID_ARGUMENT)."""


@dataclass
class RecommendInput:
    user_id: int = 0
    n: int = 10
    recent: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    gender: str = ""            # "M" / "F" / ""
    age: int = 0                # years, 0 = unknown
    occupation: str = ""
    zip_code: str = ""
    include_genres: list = field(default_factory=list)
    exclude_genres: list = field(default_factory=list)
    min_year: int = 0
    max_year: int = 0
    shares: dict | None = None
    explain: bool = False

    @property
    def has_filters(self) -> bool:
        return bool(self.include_genres or self.exclude_genres or self.min_year or self.max_year)


@dataclass
class RecommendOutput:
    items: np.ndarray        # raw movie ids
    titles: list
    scores: np.ndarray
    slots: list              # slot names
    channels: list           # per item: recall channels (explain only)
    rank_scores: np.ndarray  # per item: the ranker's probability where the ranker ordered its slot, else NaN
    reasons: list            # per item: its slot, pool and order, in words (explain only)
    bundle_version: str
    timings_ms: dict
    known_user: bool
    ignored: list            # raw ids in recent/exclude the bundle does not know
    precomputed: bool = False  # the personalized list came from the bundle's offline rankings


class Pipeline:
    def __init__(self, bundle: Bundle, shares: dict | None = None, max_n: int = MAX_N,
                 use_precomputed: bool = True, slot_pool: int = SLOT_POOL, slot_order: str = "personal",
                 list_order: str = "score"):
        self.bundle = bundle
        self.use_precomputed = use_precomputed  # False: recall and rank for every request
        self.precomputed = bundle.precomputed if use_precomputed else None
        self.shares = dict(shares or DEFAULT_SHARES)
        self.max_n = max_n
        num = bundle.num_items
        self.catalogue = ServedCatalogue.of_bundle(bundle.items, bundle.encoder)
        # recall and rank take movies added while serving when every component can grow
        self.grows = all(hasattr(c, "grow") for c in (*bundle.recaller.channels, bundle.ranker))
        self.fresh = None  # what the event store adds to the bundle (server.fresh.FreshState), when followed
        self.generation = 0  # counts the catalogue's changes: an answer kept under `answer_key` holds within one
        self.user_of_raw = dict(zip(bundle.users.raw_id.to_numpy().tolist(), bundle.users.user.to_numpy().tolist()))
        self.genre_index = {g.lower(): j for j, g in enumerate(bundle.encoder.genres)}
        seen = bundle.histories.sequences
        counts = item_counts(seen.items, num)
        self.popular = SlotList(bundle.popular, (counts[bundle.popular] / max(counts.max(), 1)).astype(np.float32))
        self.new = SlotList(bundle.new, np.linspace(1.0, 0.0, len(bundle.new), endpoint=False).astype(np.float32))
        self.demographic = DemographicPopularity(seen, bundle.user_features, num)
        if slot_order not in SLOT_ORDERS:
            raise RequestError(f"slot order must be one of {', '.join(SLOT_ORDERS)}")
        self.slot_order = slot_order
        if list_order not in LIST_ORDERS:
            raise RequestError(f"list order must be one of {', '.join(LIST_ORDERS)}")
        self.list_order = list_order
        self.popular_pool, self.new_pool = bundle.popular[:slot_pool], bundle.new[:slot_pool]
        self.popular_rank = np.zeros(num + 1, dtype=np.int64)
        self.popular_rank[bundle.popular] = np.arange(1, len(bundle.popular) + 1)
        self.new_rank = np.zeros(num + 1, dtype=np.int64)
        self.new_rank[bundle.new] = np.arange(1, len(bundle.new) + 1)

    # ---------------------------------------------------------------- inputs

    def _items(self, raw_ids: list, name: str) -> tuple[np.ndarray, list]:
        if not raw_ids:
            return NO_ITEMS, []
        if len(raw_ids) > MAX_LIST:
            raise RequestError(f"{name} holds {len(raw_ids)} ids; at most {MAX_LIST}")
        item_of_raw = self.catalogue.item_of_raw
        ids = np.array([item_of_raw.get(int(r), 0) for r in raw_ids], dtype=np.int64)
        ignored = [int(r) for r, i in zip(raw_ids, ids) if i == 0]
        return ids[ids > 0], ignored

    def _filters(self, inp: RecommendInput) -> np.ndarray | None:
        """The request's genre and year filters as a mask over the served catalogue, or None
        when it has none."""
        if not inp.has_filters:
            return None
        catalogue = self.catalogue
        allowed = np.ones(catalogue.size + 1, dtype=bool)
        for names, keep in ((inp.include_genres, True), (inp.exclude_genres, False)):
            if not names:
                continue
            unknown = [g for g in names if g.lower() not in self.genre_index]
            if unknown:
                raise RequestError(f"unknown genre(s) {echo(unknown)}; known: {', '.join(self.bundle.encoder.genres)}")
            hit = catalogue.genres[:, [self.genre_index[g.lower()] for g in names]].any(axis=1)
            allowed &= hit if keep else ~hit
        if inp.min_year:
            allowed &= catalogue.years >= inp.min_year
        if inp.max_year:
            allowed &= catalogue.years <= inp.max_year
        return allowed

    def validate(self, inp: RecommendInput) -> None:
        if not 1 <= inp.n <= self.max_n:
            raise RequestError(f"n must be between 1 and {self.max_n}, got {inp.n}")
        if inp.min_year and inp.max_year and inp.min_year > inp.max_year:
            raise RequestError(f"min_year {inp.min_year} is after max_year {inp.max_year}")
        if inp.shares is not None:
            values = list(inp.shares.values())
            if any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
                raise RequestError("quota shares must be finite, non-negative, and not all zero")
        if inp.gender not in ("", "M", "F"):
            raise RequestError(f"gender must be M, F or empty, not {echo(inp.gender)}")
        if not 0 <= inp.age <= 150:
            raise RequestError(f"age {inp.age} is out of range")

    # ---------------------------------------------------------------- request

    def answer_key(self, inp: RecommendInput) -> tuple | None:
        """A key under which the answer to `inp` may be kept and given again while `generation`
        stays the same: for a request without context whose user has no fresh events, so that
        its answer comes from the bundle alone (a known user by id, a new user by the encoded
        side features, with the filters either way); None for any other request."""
        if inp.recent or inp.exclude or self.precomputed is None:
            return None
        raw_user = int(inp.user_id)
        if self.fresh is not None and len(self.fresh.events(raw_user)[0]):
            return None
        user = self.user_of_raw.get(raw_user, 0)
        who = user or self._side_features(inp, raw_user).tobytes()
        filters = (tuple(sorted(g.lower() for g in inp.include_genres)),
                   tuple(sorted(g.lower() for g in inp.exclude_genres)),
                   inp.min_year, inp.max_year) if inp.has_filters else None
        return who, filters, inp.n, tuple(sorted(inp.shares.items())) if inp.shares else None, inp.explain

    def recommend(self, inp: RecommendInput) -> RecommendOutput:
        started = time.perf_counter()
        self.validate(inp)
        bundle, catalogue, fresh = self.bundle, self.catalogue, self.fresh
        raw_user = int(inp.user_id)
        recent, ignored_recent = self._items(inp.recent, "recent_item_ids")
        exclude, ignored_exclude = self._items(inp.exclude, "exclude_item_ids")
        filters = self._filters(inp)
        context, events, seen = self._context(raw_user, inp, recent, exclude, filters)
        user = context.user
        limit = self.recalled_items() + 1

        ranked, stored = None, None
        if not len(recent) and not len(exclude) and filters is None:
            if len(events):
                stored = fresh.ranking(raw_user) if self.use_precomputed else None
            elif user and self.precomputed is not None:
                stored = self.precomputed.user(user)
        if stored is not None:
            ranked = stored.ranked
            recall_done = rank_done = time.perf_counter()
        else:  # a new user too: a channel may serve one from side features alone
            merged, _ = bundle.recaller.recall(context)
            recall_done = time.perf_counter()
            if len(merged.items):
                ranked = rank(bundle.ranker, context, bundle.recaller, merged)
            rank_done = time.perf_counter()
        lists, orders = self._slot_lists(context, ranked, stored, inp.n)
        allowed = context.allowed.array
        if catalogue.size >= limit:
            added = np.ones(catalogue.size + 1 - limit, dtype=bool) if filters is None else filters[limit:].copy()
            added[seen[seen >= limit] - limit] = False
            added[exclude[exclude >= limit] - limit] = False
            allowed = np.concatenate([allowed, added])
        blended = blend(inp.n, inp.shares or self.shares, lists, allowed)
        if self.list_order == "score" and all(orders[SLOTS[s]] == "ranker" for s in np.unique(blended.slots)):
            blended = blended.by_score()
        finished = time.perf_counter()

        reasons = [""] * len(blended.items)
        channels = [[] for _ in blended.items]
        if inp.explain:
            reasons = self._reasons(blended, orders, ranked)
            if ranked is not None:
                row_of = {item: row for row, item in enumerate(ranked.items.tolist())}
                names = np.array(ranked.channels, dtype=object)
                channels = [names[ranked.proposed[row_of[item]]].tolist() if item in row_of else []
                            for item in blended.items.tolist()]
        # the score of an item in a slot the ranker ordered is the ranker's probability
        by_ranker = np.array([orders[SLOTS[s]] == "ranker" for s in blended.slots], dtype=bool)
        return RecommendOutput(
            items=catalogue.raw_ids[blended.items],
            titles=catalogue.titles[blended.items].tolist(),
            scores=blended.scores,
            slots=[SLOTS[s] for s in blended.slots],
            channels=channels,
            rank_scores=np.where(by_ranker, blended.scores, np.nan).astype(np.float32),
            reasons=reasons,
            bundle_version=bundle.version,
            timings_ms={"recall": (recall_done - started) * 1000, "rank": (rank_done - recall_done) * 1000,
                        "blend": (finished - rank_done) * 1000, "total": (finished - started) * 1000},
            precomputed=stored is not None,
            known_user=bool(user) or len(events) > 0,
            ignored=ignored_recent + ignored_exclude,
        )

    def _context(self, raw_user: int, inp: RecommendInput, recent: np.ndarray, exclude: np.ndarray,
                 filters: np.ndarray | None) -> tuple[RequestContext, np.ndarray, np.ndarray]:
        """The request context, the user's fresh events and every item the user has seen
        beyond the bundle's history (fresh events, then the request's recent items). Recall
        and rank know the bundle's items; items added since are blocked or filtered in the
        blender's part of the mask only."""
        user = self.user_of_raw.get(raw_user, 0)
        events, ratings = self.fresh.events(raw_user) if self.fresh is not None else (NO_ITEMS, None)
        features = None if user else self._side_features(inp, raw_user)
        known = self.recalled_items()
        limit = known + 1
        seen = np.concatenate([events, recent]) if len(events) else recent
        seen_ratings = np.concatenate([ratings, np.full(len(recent), RECENT_RATING)]) if len(events) else None
        keep = seen < limit
        context = self.bundle.context(user, features, seen[keep], exclude[exclude < limit],
                                      None if filters is None else ItemMask(filters[:limit]), known,
                                      seen_ratings[keep] if seen_ratings is not None else None)
        return context, events, seen

    def recalled_items(self) -> int:
        """How many movies recall and rank know: the served catalogue when they grow with it."""
        return self.catalogue.size if self.grows else self.catalogue.bundle_items

    def add_items(self, rows: list[tuple]) -> None:
        """Movies added or changed in the store, rows of (raw_id, title, year, genres, plot):
        the catalogue takes them, and recall and rank too when they can (`AddedItems`)."""
        before = self.catalogue.size
        catalogue = self.catalogue.with_items(rows, self.bundle.encoder)
        if catalogue.size > before and self.grows:
            ids = np.arange(before + 1, catalogue.size + 1)
            plot_of = {raw: plot for raw, _, _, _, plot in rows}
            titles = catalogue.titles[ids].tolist()
            plots = [plot_of.get(int(raw), "") for raw in catalogue.raw_ids[ids]]
            genres = ["|".join(g for g, on in zip(self.bundle.encoder.genres, row) if on) for row in catalogue.genres[ids]]
            content = self.bundle.content
            vectors = content.encoder.encode(titles, plots, genres, catalogue.years[ids].tolist()) if content else None
            added = AddedItems(ids, catalogue.years[ids], catalogue.genres[ids].astype(np.float32), vectors,
                               content.collaborative(vectors) if content else None)
            for component in (*self.bundle.recaller.channels, self.bundle.ranker):
                component.grow(added)
        self.catalogue = catalogue
        self.generation += 1

    def context_of(self, raw_user: int) -> RequestContext:
        """The context of a request of `raw_user` that brings nothing but the user id."""
        return self._context(raw_user, RecommendInput(), NO_ITEMS, NO_ITEMS, None)[0]

    # ---------------------------------------------------------------- slots

    def _slot_lists(self, context, ranked, stored: UserRanking | None,
                    n: int) -> tuple[dict[str, SlotList], dict[str, str]]:
        """Each slot's list and how it is ordered: "ranker" (for this user by the bundle's
        ranker), "group" (popularity among users of the same gender and age) or "global".
        A request answered from a stored ranking (the bundle's, or one made when the user's
        feedback arrived) takes the pools' orders from there too, when they were made for this
        server's pool size and hold enough for its n. Items added to the catalogue after the
        bundle lead the new slot, newest first."""
        lists, orders = {}, {}
        slots = {"popular": (self.popular, self.popular_pool), "new": (self.new, self.new_pool)}
        if ranked is not None and len(ranked.items):
            lists["personalized"], orders["personalized"] = SlotList(ranked.items, ranked.scores), "ranker"
        else:  # nothing recalled (a new user): the most popular with the user's group, else with everyone,
            # ordered for the user by the ranker like the other slots where it can
            demographic = self.demographic.ranked(context.user_features)
            whole = SlotList(*demographic) if demographic else self.popular
            lists["personalized"] = whole
            orders["personalized"] = orders[POPULAR_AMONG] = "group" if demographic else "global"
            slots["personalized"] = (whole, whole.items[:len(self.popular_pool)])
        ordered_pools = {}
        if self.slot_order != "global":
            if stored is not None and all(stored.pool_size == len(pool) and 2 * n <= stored.pool_keep and
                                          slot in stored.pools for slot, (_, pool) in slots.items()):
                ordered_pools = {slot: stored.pools[slot] for slot in slots}
            else:  # only what the request allows needs an order, and of it only as much as the
                # slot can take: the request's n, past at most n items other slots took first
                ordered_pools = order_pools(self.bundle.ranker, context, self.bundle.recaller,
                                            {slot: pool[context.allowed.array[pool]] for slot, (_, pool) in slots.items()},
                                            2 * n)
        for slot, (whole, pool) in slots.items():
            ordered = ordered_pools.get(slot)   # none with the slot order "global"
            if ordered is not None:
                lists[slot], orders[slot] = SlotList(*ordered), "ranker"
            elif slot == "personalized":
                continue
            elif self.slot_order == "global":
                lists[slot], orders[slot] = whole, "global"
            else:
                by_group = self.demographic.order(context.user_features, pool)
                lists[slot] = SlotList(*by_group) if by_group else SlotList(pool, whole.scores[:len(pool)])
                orders[slot] = "group" if by_group else "global"
        added = self.catalogue.added
        if len(added):
            lists["new"] = self._with_added(lists["new"], orders["new"], context, added, n)
        return lists, orders

    def _with_added(self, new: SlotList, order: str, context, added: np.ndarray, n: int) -> SlotList:
        """The new slot with the movies added while serving: where recall and rank know them
        from their content (a bundle with a content map) and the slot is ordered for the user,
        in the ranker's order among the rest; else ahead of the rest, newest first."""
        if self.grows and self.bundle.content is not None and order == "ranker":
            ordered = order_pool(self.bundle.ranker, context, self.bundle.recaller,
                                 added[context.allowed.array[added]], 2 * n)
            if ordered is not None:
                items, scores = np.concatenate([ordered[0], new.items]), np.concatenate([ordered[1], new.scores])
                by_score = np.argsort(-scores, kind="stable")
                return SlotList(items[by_score], scores[by_score])
        return SlotList(np.concatenate([added, new.items]), np.concatenate([np.ones(len(added), np.float32), new.scores]))

    def _reasons(self, blended, orders: dict[str, str], ranked) -> list[str]:
        """Why each item is in the list: its slot, the pool it came from, how the slot was ordered."""
        ranker = self.bundle.ranker.name
        ordered = {"ranker": f", ordered for this user by the {ranker} ranker",
                   "group": ", ordered by popularity among users of the same gender and age", "global": ""}
        fallback = {"group": "the most popular with users of the same gender and age",
                    "global": "the most popular overall"}
        out = []
        for item, slot, row in zip(blended.items.tolist(), blended.slots.tolist(), blended.rows.tolist()):
            name, order = SLOTS[slot], orders[SLOTS[slot]]
            if name == "personalized" and POPULAR_AMONG in orders:
                out.append(f"personalized, for a user without history: {fallback[orders[POPULAR_AMONG]]}"
                           + (f" (the {len(self.popular_pool)} first){ordered[order]}" if order == "ranker" else ""))
            elif name == "personalized":
                out.append(f"personalized: #{row + 1} of {len(ranked.items)} recalled candidates by the {ranker} ranker")
            elif name == "popular":
                pool = "most popular" if order == "global" else f"of the {len(self.popular_pool)} most popular"
                out.append(f"popular: #{self.popular_rank[item]} {pool}{ordered[order]}")
            elif item > self.catalogue.bundle_items:
                out.append(f"new ({self.catalogue.years[item]}): added to the catalogue after this bundle was built"
                           + (ordered[order] if self.grows and self.bundle.content is not None else ""))
            else:
                pool = "newest" if order == "global" else f"of the {len(self.new_pool)} newest"
                out.append(f"new ({self.catalogue.years[item]}): #{self.new_rank[item]} {pool}{ordered[order]}")
        return out

    def _side_features(self, inp: RecommendInput, raw_user: int) -> np.ndarray:
        """A user the bundle does not know: the request's side features, else those the event
        store holds for the user."""
        given = inp.gender or inp.age or inp.occupation or inp.zip_code
        stored = None if given or self.fresh is None else self.fresh.side_features(raw_user)
        gender, age, occupation, zip_code = stored or (inp.gender, inp.age, inp.occupation, inp.zip_code)
        return self.bundle.encoder.encode_request(gender, age, occupation, zip_code)
