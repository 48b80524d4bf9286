"""The per-user rankings of a build computed on a cluster (`build --build-cluster`, see
`movierec.shards`), over shards of users. The in-process loop stays the default.

Each worker loads the components of the version being built from the files the builder has just
written into it (as a server does; workers on other machines need the bundle root on shared
storage), once, and keeps them for every shard it takes. A shard is `rank_user` for each of its
users, as the in-process loop runs it, so both give the same rankings (a test compares the
bundles' files).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from movierec.files import load_npy, load_npz
from movierec.rank.precomputed import PrecomputedRankings, pack, pool_size, rank_user
from movierec.shards import map_shards

SHARD = 250
_LOADED: dict = {}   # in each worker process: bundle directory -> what its shards need


def _components(directory: str, fragments: list, rank_fragment: dict, slot_pool: int):
    if directory not in _LOADED:
        from movierec.dataset.sequences import Histories, Sequences
        from movierec.rank.rankers import RANKERS
        from movierec.recall.channels import CHANNELS
        from movierec.recall.component import ComponentFiles
        from movierec.recall.recaller import Recaller

        path = Path(directory)
        channels = [CHANNELS.get(f["name"]).load(ComponentFiles(path, f"recall.{f['name']}"), f) for f in fragments]
        ranker = RANKERS.get(rank_fragment["name"]).load(ComponentFiles(path, f"rank.{rank_fragment['name']}"),
                                                          rank_fragment)
        stored = load_npz(path / "histories.npz")
        histories = Histories(Sequences(stored["indptr"], stored["items"]), stored["ratings"])
        pools = {slot: load_npy(path / f"{slot}.npy")[:slot_pool] for slot in ("popular", "new")}
        _LOADED[directory] = (Recaller(channels, {f["name"]: f["quota"] for f in fragments}), ranker, histories,
                              load_npy(path / "user_features.npy"), pools)
    return _LOADED[directory]


def rank_shard(directory: str, fragments: list, rank_fragment: dict, slot_pool: int, keep: int, num_items: int,
               start: int, end: int) -> PrecomputedRankings:
    """Users start..end-1 ranked, in a worker, packed (arrays travel back cheaply; objects do not)."""
    from threadpoolctl import threadpool_limits

    from movierec.recall.context import RequestContext
    from movierec.recall.index import search_threads

    recaller, ranker, histories, features, pools = _components(directory, fragments, rank_fragment, slot_pool)
    with threadpool_limits(1), search_threads(1):
        users = [rank_user(recaller, ranker, RequestContext.build(num_items, histories, user, features[user]), pools,
                           keep) for user in range(start, end)]
    return pack(recaller.names, users, tuple(pools), pool_size(pools), keep)


def rank_shard_into(url: str, prefix: str, directory: str, fragments: list, rank_fragment: dict, slot_pool: int,
                    keep: int, num_items: int, start: int, end: int) -> bytes:
    """Users start..end-1 ranked in a worker and written by it into the ranking store under
    `prefix`; only the payloads' digests travel back."""
    from movierec.rank.ranking_stores import RedisRankings

    block = rank_shard(directory, fragments, rank_fragment, slot_pool, keep, num_items, start, end)
    return RedisRankings.write_block(url, prefix, start, block)


def rank_users(cluster: str, directory: Path, fragments: list, rank_fragment: dict, num_users: int, num_items: int,
               slot_pool: int, keep: int, advance: Callable[[int], None] | None = None, say=print,
               store: tuple[str, str] | None = None) -> list:
    """The rankings of users 1..num_users, computed by the cluster: packed blocks in user order;
    or, with `store` (a Redis URL and key prefix), written by the workers straight into it, so
    no process holds them all, and each block's payload digests in user order."""
    from movierec.rank.ranking_stores import DIGEST_BYTES

    shards = [(start, min(start + SHARD, num_users + 1)) for start in range(1, num_users + 1, SHARD)]
    shared = (str(directory), fragments, rank_fragment, slot_pool, keep, num_items)
    if store:
        task, shared, users_in = rank_shard_into, (*store, *shared), lambda digests: len(digests) // DIGEST_BYTES
    else:
        task, users_in = rank_shard, lambda block: block.num_rows
    started = time.perf_counter()
    results = map_shards(cluster, task, shared, shards, done=(lambda result: advance(users_in(result))) if advance else None)
    say(f"rankings of {num_users:,} users on {cluster}: {time.perf_counter() - started:.1f}s")
    return results
