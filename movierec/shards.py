"""Work over shards of users on a cluster (`build --build-cluster`): Dask (`dask:local:N` starts
N worker processes here, `dask:tcp://HOST:8786` joins a scheduler) or Ray (`ray:local:N`,
`ray:HOST:PORT`). Callers keep their own in-process loop, the default.

`map_shards(cluster, task, shared, shards)` runs `task(*shared, *shard)` for every shard and
returns the results in shard order. `shared` goes to each worker once (Dask scatters it, Ray
puts it in its object store), so large arrays common to every shard are not sent per task.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from movierec.errors import ConfigError


def parse_cluster(cluster: str) -> tuple[str, str]:
    engine, sep, where = cluster.partition(":")
    if engine not in ("dask", "ray") or not sep or not where:
        raise ConfigError(f"--build-cluster is dask:local:N, dask:tcp://HOST:PORT, ray:local:N or ray:HOST:PORT, "
                          f"not {cluster!r}")
    if where.startswith("local:") and not where.removeprefix("local:").isdigit():
        raise ConfigError(f"--build-cluster {cluster!r}: local:N takes a number of workers")
    return engine, where


def map_shards(cluster: str, task: Callable, shared: tuple, shards: list[tuple],
               done: Callable[[Any], None] | None = None) -> list:
    """[task(*shared, *shard) for shard in shards], on `cluster`; `done(result)` as each shard
    finishes."""
    engine, where = parse_cluster(cluster)
    run = _on_dask if engine == "dask" else _on_ray
    results = run(where, task, shared, shards, done)
    return [results[index] for index in range(len(shards))]


def _on_dask(where: str, task, shared: tuple, shards: list, done) -> dict:
    from dask.distributed import Client, LocalCluster, as_completed

    local = where.startswith("local:")
    cluster = LocalCluster(n_workers=int(where[6:]), threads_per_worker=1, processes=True,
                           dashboard_address=None) if local else None
    client = Client(cluster if local else where)
    results = {}
    try:
        scattered = [client.scatter([value], broadcast=True)[0] for value in shared]   # each value whole
        futures = {client.submit(task, *scattered, *shard, pure=False): index for index, shard in enumerate(shards)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if done:
                done(results[futures[future]])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def _on_ray(where: str, task, shared: tuple, shards: list, done) -> dict:
    import ray

    if where.startswith("local:"):
        ray.init(num_cpus=int(where[6:]), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(address=where, logging_level=logging.WARNING)
    results = {}
    try:
        remote = ray.remote(num_cpus=1)(task)
        stored = [ray.put(value) for value in shared]
        pending = {remote.remote(*stored, *shard): index for index, shard in enumerate(shards)}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(finished[0])
            results[index] = ray.get(finished[0])
            if done:
                done(results[index])
    finally:
        ray.shutdown()
    return results
