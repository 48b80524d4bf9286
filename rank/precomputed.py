"""Every known user's ranked candidates, computed when the bundle is built.

For a known user whose request brings no context (no recent items, nothing excluded, no
filters that reach recall) the result of recall and rank depends on the bundle alone, so
`precompute_rankings` computes it for every user offline and the server reads it back instead
of repeating recall and rank for each request: the split between an offline builder and an
online server that engines such as Gorse make. Requests with context and new users still go
through recall and rank online.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from movierec.files import load_npz, save_npz
from movierec.recall.context import RequestContext
from movierec.recall.recaller import Recaller

from .ranker import Ranked, Ranker, order_pools, rank

PACK_BLOCK = 4096
PAYLOAD_MAGIC = b"MRR1"   # a user's ranking as one payload, packed (`UserRanking.to_bytes`)


@dataclass
class UserRanking:
    """One user's ranked candidates and order of each slot's pool (None where the ranker could
    not order it), as computed for a request without context: by the builder for every known
    user (`PrecomputedRankings.user`), or when a user's feedback arrives (`server.fresh`)."""

    ranked: Ranked
    pools: dict               # slot name -> (items, scores) | None
    pool_size: int            # the pools' length when ordered
    pool_keep: int            # how many of each pool's unseen items are kept

    def to_bytes(self) -> bytes:
        """One payload (a Redis value, a row of the event store): the magic, a JSON header's
        length and the header, then the arrays packed as the bundle's table packs them (int32
        items, float32 scores, the channel flags as bits), little-endian."""
        ordered = {slot: order for slot, order in self.pools.items() if order is not None}
        header = json.dumps({"channels": list(self.ranked.channels), "n": len(self.ranked.items),
                             "pool_size": self.pool_size, "pool_keep": self.pool_keep,
                             "slots": {slot: len(items) for slot, (items, _) in ordered.items()}},
                            separators=(",", ":")).encode()
        arrays = [self.ranked.items.astype("<i4"), self.ranked.scores.astype("<f4"),
                  np.packbits(self.ranked.proposed, axis=1, bitorder="little")]
        for items, scores in ordered.values():
            arrays += [items.astype("<i4"), scores.astype("<f4")]
        return b"".join([PAYLOAD_MAGIC, struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays)])

    @classmethod
    def from_bytes(cls, data: bytes, slots: tuple) -> "UserRanking":
        if not data.startswith(PAYLOAD_MAGIC):
            return cls._from_npz(data, slots)
        (length,) = struct.unpack_from("<I", data, len(PAYLOAD_MAGIC))
        offset = len(PAYLOAD_MAGIC) + 4 + length
        header = json.loads(data[offset - length:offset])
        channels, n = tuple(header["channels"]), header["n"]

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal offset
            array = np.frombuffer(data, dtype, count, offset)
            offset += array.nbytes
            return array

        items, scores = take("<i4", n).astype(np.int64), take("<f4", n).astype(np.float32)
        width = (len(channels) + 7) // 8
        flags = np.unpackbits(take("u1", n * width).reshape(n, width), axis=1, count=len(channels),
                              bitorder="little").astype(bool)
        ordered = {slot: (take("<i4", count).astype(np.int64), take("<f4", count).astype(np.float32))
                   for slot, count in header["slots"].items()}
        if offset != len(data):
            raise ValueError(f"a ranking payload of {len(data)} bytes holds {offset}")
        return cls(Ranked(channels, items, scores, flags), {slot: ordered.get(slot) for slot in slots},
                   int(header["pool_size"]), int(header["pool_keep"]))

    @classmethod
    def _from_npz(cls, data: bytes, slots: tuple) -> "UserRanking":
        """A payload written before the packed layout (an `.npz`), as the event store and Redis
        may still hold for a bundle built then."""
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        ordered = set(arrays["slots"].tolist())
        ranked = Ranked(tuple(arrays["channels"].tolist()), arrays["items"].astype(np.int64), arrays["scores"],
                        arrays["proposed"].astype(bool))
        pools = {slot: (arrays[f"{slot}_items"].astype(np.int64), arrays[f"{slot}_scores"]) if slot in ordered else None
                 for slot in slots}
        return cls(ranked, pools, int(arrays["pool_size"]), int(arrays["pool_keep"]))


def pool_size(pools: dict[str, np.ndarray]) -> int:
    """The length the slots' pools are ordered at: the longest of them."""
    return max((len(pool) for pool in pools.values()), default=0)


def rank_user(recaller: Recaller, ranker: Ranker, context: RequestContext, pools: dict[str, np.ndarray],
              keep: int) -> UserRanking:
    """Recall and rank for one context exactly as a request would; and each pool in the
    ranker's order for the user, without the user's seen items, its first `keep` items (what a
    request of the most items can take)."""
    merged, _ = recaller.recall(context)
    allowed = {slot: pool[context.allowed.array[pool]] for slot, pool in pools.items()}
    return UserRanking(rank(ranker, context, recaller, merged), order_pools(ranker, context, recaller, allowed, keep),
                       pool_size(pools), keep)


@dataclass
class PoolOrders:
    """Each user's order of a slot's pool (popular or new) without the user's seen items, as CSR
    arrays; `ranked[u]` is False where the ranker could not order it (served online then)."""

    indptr: np.ndarray    # (num_users + 2,) int64
    items: np.ndarray     # int32
    scores: np.ndarray    # float32
    ranked: np.ndarray    # (num_users + 1,) bool

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.ranked[user]:
            return None
        start, end = self.indptr[user], self.indptr[user + 1]
        return self.items[start:end].astype(np.int64), self.scores[start:end]

    def arrays(self, prefix: str) -> dict:
        return {f"{prefix}_{name}": getattr(self, name) for name in ("indptr", "items", "scores", "ranked")}

    @classmethod
    def from_arrays(cls, data: dict, prefix: str) -> "PoolOrders":
        return cls(*(data[f"{prefix}_{name}"] for name in ("indptr", "items", "scores", "ranked")))

    @classmethod
    def from_lists(cls, lists: list[tuple[np.ndarray, np.ndarray] | None]) -> "PoolOrders":
        kept = [entry if entry is not None else (np.zeros(0, np.int64), np.zeros(0, np.float32)) for entry in lists]
        return cls(_indptr([len(items) for items, _ in kept]),
                   np.concatenate([items for items, _ in kept]).astype(np.int32),
                   np.concatenate([scores for _, scores in kept]).astype(np.float32),
                   np.array([entry is not None for entry in lists], dtype=bool))


@dataclass
class PrecomputedRankings:
    """`Ranked` lists of users 0..num_users as CSR arrays; row 0 (the unknown user) is empty.
    With them, each user's order of the popular and new slots' pools of `pool_size` items."""

    channels: tuple            # recall channel names: bit j of `proposed` is channel j
    indptr: np.ndarray         # (num_users + 2,) int64
    items: np.ndarray          # int32
    scores: np.ndarray         # float32
    proposed: np.ndarray       # (len(items), ceil(C / 8)) uint8, the channel flags packed little-endian
    pool_size: int = 0
    pool_keep: int = 0                         # how many of each pool's unseen items are kept
    pools: dict = field(default_factory=dict)  # slot name -> PoolOrders

    def of(self, user: int) -> Ranked:
        start, end = self.indptr[user], self.indptr[user + 1]
        flags = np.unpackbits(self.proposed[start:end], axis=1, count=len(self.channels), bitorder="little")
        return Ranked(self.channels, self.items[start:end].astype(np.int64), self.scores[start:end], flags.astype(bool))

    def user(self, user: int) -> UserRanking:
        return UserRanking(self.of(user), {slot: orders.of(user) for slot, orders in self.pools.items()},
                           self.pool_size, self.pool_keep)

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 2

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def save(self, path: str | Path) -> None:
        arrays = {"channels": np.array(self.channels, dtype=str), "indptr": self.indptr, "items": self.items,
                  "scores": self.scores, "proposed": self.proposed, "pool_size": np.array(self.pool_size),
                  "pool_keep": np.array(self.pool_keep),
                  "pool_slots": np.array(list(self.pools), dtype=str)}
        for slot, orders in self.pools.items():
            arrays.update(orders.arrays(slot))
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "PrecomputedRankings":
        data = load_npz(path)
        rankings = cls(tuple(data["channels"].tolist()), data["indptr"], data["items"], data["scores"],
                       data["proposed"], int(data["pool_size"]), int(data["pool_keep"]),
                       {slot: PoolOrders.from_arrays(data, slot) for slot in data["pool_slots"].tolist()})
        if rankings.indptr[-1] != len(rankings.items) or not (
                len(rankings.items) == len(rankings.scores) == len(rankings.proposed)) or any(
                orders.indptr[-1] != len(orders.items) for orders in rankings.pools.values()):
            raise ValueError("precomputed rankings: arrays of inconsistent lengths")
        return rankings


def precompute_rankings(recaller: Recaller, ranker: Ranker, contexts: Iterable[RequestContext],
                        pools: dict[str, np.ndarray], keep: int,
                        advance: Callable[[int], None] | None = None) -> PrecomputedRankings:
    """`rank_user` for each context (users 1..N, in order, without request context), as one table."""
    return join(list(ranked_blocks(recaller, ranker, contexts, pools, keep, advance)), recaller.names, tuple(pools),
                pool_size(pools), keep)


def ranked_blocks(recaller: Recaller, ranker: Ranker, contexts: Iterable[RequestContext],
                  pools: dict[str, np.ndarray], keep: int,
                  advance: Callable[[int], None] | None = None) -> Iterator[PrecomputedRankings]:
    """`rank_user` for each context (users 1..N, in order, without request context), packed a
    block at a time: for a store that takes them a block at a time, or for `join`."""
    def ranked():
        for context in contexts:
            yield rank_user(recaller, ranker, context, pools, keep)
            if advance:
                advance(1)
    return pack_blocks(recaller.names, ranked(), tuple(pools), pool_size(pools), keep)


def pack(channels: tuple, rankings: list[UserRanking], slots: tuple, pool_size: int, keep: int) -> PrecomputedRankings:
    """These users' rankings as CSR arrays, one row each (no row 0): a block of a table."""
    return PrecomputedRankings(
        tuple(channels), _indptr([len(r.ranked.items) for r in rankings]),
        np.concatenate([r.ranked.items for r in rankings]).astype(np.int32),
        np.concatenate([r.ranked.scores for r in rankings]).astype(np.float32),
        np.packbits(np.concatenate([r.ranked.proposed for r in rankings]), axis=1, bitorder="little"),
        pool_size=pool_size, pool_keep=keep,
        pools={slot: PoolOrders.from_lists([ranking.pools[slot] for ranking in rankings]) for slot in slots})


def join(blocks: list[PrecomputedRankings], channels: tuple, slots: tuple, pool_size: int,
         keep: int) -> PrecomputedRankings:
    """Blocks of users 1..N, in order, as one table; row 0 (the unknown user) stays empty. The
    blocks are consumed: each is let go once copied, so memory holds the table about once."""
    unknown = UserRanking(Ranked(tuple(channels), np.zeros(0, np.int64), np.zeros(0, np.float32),
                                 np.zeros((0, len(channels)), dtype=bool)), {slot: None for slot in slots}, pool_size, keep)
    blocks.insert(0, pack(channels, [unknown], slots, pool_size, keep))
    indptr = _join_indptr([block.indptr for block in blocks])
    pool_indptr = {slot: _join_indptr([block.pools[slot].indptr for block in blocks]) for slot in slots}
    table = PrecomputedRankings(
        tuple(channels), indptr, np.empty(indptr[-1], np.int32), np.empty(indptr[-1], np.float32),
        np.empty((indptr[-1], blocks[0].proposed.shape[1]), np.uint8), pool_size=pool_size, pool_keep=keep,
        pools={slot: PoolOrders(pool_indptr[slot], np.empty(pool_indptr[slot][-1], np.int32),
                                np.empty(pool_indptr[slot][-1], np.float32), np.empty(len(indptr) - 1, bool))
               for slot in slots})
    row = 0
    while blocks:
        block = blocks.pop(0)
        rows = slice(row, row + block.num_rows)
        entries = slice(indptr[row], indptr[row + block.num_rows])
        table.items[entries], table.scores[entries], table.proposed[entries] = block.items, block.scores, block.proposed
        for slot in slots:
            orders, part = table.pools[slot], block.pools[slot]
            pooled = slice(orders.indptr[row], orders.indptr[row + block.num_rows])
            orders.items[pooled], orders.scores[pooled], orders.ranked[rows] = part.items, part.scores, part.ranked
        row += block.num_rows
    return table


def pack_blocks(channels: tuple, rankings: Iterable[UserRanking], slots: tuple, pool_size: int,
                keep: int) -> Iterator[PrecomputedRankings]:
    """Users' rankings packed PACK_BLOCK at a time, so that a million of them never sit in
    memory as objects."""
    rankings = iter(rankings)
    while block := list(itertools.islice(rankings, PACK_BLOCK)):
        yield pack(channels, block, slots, pool_size, keep)


def _indptr(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _join_indptr(indptrs: list[np.ndarray]) -> np.ndarray:
    """The row offsets of CSR blocks laid end to end."""
    bases = np.cumsum([0] + [indptr[-1] for indptr in indptrs[:-1]])
    return np.concatenate([[0]] + [indptr[1:] + base for indptr, base in zip(indptrs, bases)]).astype(np.int64)
