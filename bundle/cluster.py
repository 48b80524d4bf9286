"""The per-user rankings of a build computed on a cluster (`build --build-cluster`), over shards
of users: Dask (`dask:local:N` starts N worker processes here, `dask:tcp://HOST:8786` joins a
scheduler) or Ray (`ray:local:N`, `ray:HOST:PORT`). The in-process loop stays the default.

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

from movierec.errors import ConfigError
from movierec.files import load_npy, load_npz
from movierec.rank.precomputed import UserRanking, rank_user

SHARD = 250
_LOADED: dict = {}   # in each worker process: bundle directory -> what its shards need


def parse_cluster(cluster: str) -> tuple[str, str]:
    engine, sep, where = cluster.partition(":")
    if engine not in ("dask", "ray") or not sep or not where:
        raise ConfigError(f"--build-cluster is dask:local:N, dask:tcp://HOST:PORT, ray:local:N or ray:HOST:PORT, "
                          f"not {cluster!r}")
    if where.startswith("local:") and not where.removeprefix("local:").isdigit():
        raise ConfigError(f"--build-cluster {cluster!r}: local:N takes a number of workers")
    return engine, where


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
               start: int, end: int) -> list[UserRanking]:
    """Users start..end-1 ranked, in a worker."""
    from threadpoolctl import threadpool_limits

    from movierec.recall.context import RequestContext
    from movierec.recall.index import search_threads

    recaller, ranker, histories, features, pools = _components(directory, fragments, rank_fragment, slot_pool)
    with threadpool_limits(1), search_threads(1):
        return [rank_user(recaller, ranker, RequestContext.build(num_items, histories, user, features[user]), pools,
                          keep) for user in range(start, end)]


def rank_users(cluster: str, directory: Path, fragments: list, rank_fragment: dict, num_users: int, num_items: int,
               slot_pool: int, keep: int, advance: Callable[[int], None] | None = None, say=print) -> list[UserRanking]:
    """The rankings of users 1..num_users, computed by the cluster, in user order."""
    engine, where = parse_cluster(cluster)
    shards = [(start, min(start + SHARD, num_users + 1)) for start in range(1, num_users + 1, SHARD)]
    args = (str(directory), fragments, rank_fragment, slot_pool, keep, num_items)
    started = time.perf_counter()
    results: dict[int, list] = {}
    if engine == "dask":
        from dask.distributed import Client, LocalCluster, as_completed

        local = where.startswith("local:")
        cluster_object = LocalCluster(n_workers=int(where[6:]), threads_per_worker=1, processes=True,
                                      dashboard_address=None) if local else None
        client = Client(cluster_object if local else where)
        try:
            futures = {client.submit(rank_shard, *args, start, end, pure=False): index
                       for index, (start, end) in enumerate(shards)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if advance:
                    advance(len(results[futures[future]]))
        finally:
            client.close()
            if cluster_object is not None:
                cluster_object.close()
    else:
        import ray

        local = where.startswith("local:")
        ray.init(num_cpus=int(where[6:]), include_dashboard=False, log_to_driver=False) if local else \
            ray.init(address=where)
        try:
            remote = ray.remote(num_cpus=1)(rank_shard)
            pending = {remote.remote(*args, start, end): index for index, (start, end) in enumerate(shards)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                results[index] = ray.get(done[0])
                if advance:
                    advance(len(results[index]))
        finally:
            ray.shutdown()
    say(f"rankings of {num_users:,} users on {cluster}: {time.perf_counter() - started:.1f}s")
    return [ranking for index in range(len(shards)) for ranking in results[index]]
