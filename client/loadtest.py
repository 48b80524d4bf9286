"""`movierec bench`: latency and throughput of a Recommend server, against a gRPC floor.

Closed loop (`concurrency` calls in flight) or open loop (`rate` calls per second, latency
measured from each call's scheduled start, so a slow server cannot hide its queueing). The
load comes from several client processes so that the client is not the bottleneck; their CPU
use is reported. The same load against the health check (a no-op RPC on the same server) gives
the floor. `in_process` times recall, rank and blend with no network at all.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from queue import Empty

import numpy as np

from movierec.errors import ConfigError, MovieRecError

PERCENTILES = (50, 90, 95, 99, 99.9)
CONNECTIONS_PER_PROCESS = 4


class LoadError(MovieRecError):
    """The load could not be generated or the server did not come up."""


FILTER_GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Horror", "Children's")


@dataclass
class Mix:
    """Shares of the request mix; the rest are known users with no recent items."""

    new_users: float
    with_recent: float
    with_filters: float
    n: int

    def __post_init__(self) -> None:
        shares = (self.new_users, self.with_recent, self.with_filters)
        if min(shares) < 0 or sum(shares) > 1:
            raise ConfigError("--new-users, --with-recent and --with-filters must be shares in [0, 1] summing "
                              "to at most 1")
        if not 1 <= self.n <= 200:
            raise ConfigError("--n must be between 1 and 200")

    def draw(self, rng: np.random.Generator, users, items, count: int) -> list[dict]:
        """`count` requests as RecommendInput fields: new users with side features, known users
        with 3 recent items, known users filtering on one genre, known users without context."""
        out = []
        for kind in rng.random(count):
            if kind < self.new_users:
                out.append({"n": self.n, "gender": "MF"[int(rng.integers(2))], "age": int(rng.integers(15, 70))})
                continue
            request = {"user_id": int(rng.choice(users)), "n": self.n}
            if kind < self.new_users + self.with_recent:
                request["recent"] = [int(i) for i in rng.choice(items, 3, replace=False)]
            elif kind < self.new_users + self.with_recent + self.with_filters:
                request["include_genres"] = [str(rng.choice(FILTER_GENRES))]
            out.append(request)
        return out


@dataclass
class LoadSpec:
    target: str
    duration: float
    warmup: float
    concurrency: int              # closed loop: calls in flight, over all client processes
    rate: float                   # open loop: calls per second (0 = closed loop)
    processes: int
    mix: Mix
    users: list                   # raw ids of known users
    items: list                   # raw movie ids for recent items
    seed: int = 0


def _requests(spec: LoadSpec, worker: int, count: int):
    from movierec.server.v1 import recommender_pb2 as pb

    gender = {"M": pb.GENDER_MALE, "F": pb.GENDER_FEMALE}
    out = []
    for fields in spec.mix.draw(np.random.default_rng([spec.seed, worker]), spec.users, spec.items, count):
        out.append(pb.RecommendRequest(
            user_id=fields.get("user_id", 0), n=fields["n"], recent_item_ids=fields.get("recent", []),
            side_features=pb.SideFeatures(gender=gender.get(fields.get("gender"), 0), age=fields.get("age", 0)),
            filters=pb.Filters(include_genres=fields.get("include_genres", []))))
    return out


def calls_in_flight(concurrency: int, processes: int, worker: int) -> int:
    """Worker `worker`'s share of a closed loop's calls in flight; the shares add up exactly."""
    return concurrency // processes + (worker < concurrency % processes)


async def _drive(spec: LoadSpec, worker: int, floor: bool) -> dict:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    from .connect import aio_channel

    share = 1.0 / spec.processes
    requests = _requests(spec, worker, 4096)
    latencies, codes, stages = [], {}, []
    # Several connections per process, so SO_REUSEPORT can spread them over server workers.
    channels = [aio_channel(spec.target, options=(("grpc.use_local_subchannel_pool", 1),))
                for _ in range(CONNECTIONS_PER_PROCESS)]
    try:
        stubs = [pb_grpc.RecommenderStub(c) for c in channels]
        healths = [health_pb2_grpc.HealthStub(c) for c in channels]
        check = health_pb2.HealthCheckRequest()
        begin = time.perf_counter()
        measure_from = begin + spec.warmup
        end = measure_from + spec.duration
        counter = not_sent = 0

        async def call(scheduled: float) -> None:
            nonlocal counter
            request = requests[counter % len(requests)]
            connection = counter % len(channels)
            counter += 1
            response = None
            try:
                if floor:
                    await healths[connection].Check(check, timeout=5)
                else:
                    response = await stubs[connection].Recommend(request, timeout=5)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            done = time.perf_counter()
            if scheduled >= measure_from:
                codes[code] = codes.get(code, 0) + 1
                if code == "OK":  # a failed call's latency says nothing about serving
                    latencies.append(done - scheduled)
                if response is not None and not floor:
                    t = response.timings
                    stages.append((t.recall_ms, t.rank_ms, t.blend_ms, t.total_ms, t.precomputed, t.cached))

        if spec.rate > 0:
            interval = 1.0 / (spec.rate * share)
            tasks = set()
            next_at = begin
            while next_at < end:
                now = time.perf_counter()
                if now >= end:  # the client fell behind its schedule: what is left is not sent
                    not_sent = int((end - next_at) / interval) + 1
                    break
                await asyncio.sleep(max(next_at - now, 0.0))
                task = asyncio.create_task(call(next_at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += interval
            await asyncio.gather(*tasks)
        else:
            inflight = calls_in_flight(spec.concurrency, spec.processes, worker)

            async def loop() -> None:
                while time.perf_counter() < end:
                    await call(time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(inflight)))
    finally:
        for channel in channels:
            await channel.close()
    return {"latencies": latencies, "codes": codes, "stages": stages, "not_sent": not_sent}


def _worker(spec: LoadSpec, worker: int, floor: bool, queue) -> None:
    started = time.process_time()
    result = asyncio.run(_drive(spec, worker, floor))
    result["cpu_seconds"] = time.process_time() - started
    queue.put(result)


def summarise(latencies: np.ndarray, duration: float) -> dict:
    if len(latencies) == 0:
        return {"count": 0, "throughput": 0.0}
    ms = latencies * 1000
    out = {"count": int(len(ms)), "throughput": len(ms) / duration, "mean_ms": float(ms.mean()),
           "max_ms": float(ms.max())}
    out.update({f"p{p:g}_ms": float(np.percentile(ms, p)) for p in PERCENTILES})
    return out


def run_load(spec: LoadSpec, floor: bool = False) -> tuple[dict, np.ndarray]:
    """Drive the load from `spec.processes` client processes and merge what they measured."""
    if not spec.rate and spec.concurrency < spec.processes:  # a process per call in flight at most
        spec = replace(spec, processes=spec.concurrency)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(spec, w, floor, queue)) for w in range(spec.processes)]
    for process in workers:
        process.start()
    results = []
    deadline = time.time() + spec.warmup + spec.duration + 120
    while len(results) < len(workers):
        try:
            results.append(queue.get(timeout=1))
        except Empty:
            crashed = [p.exitcode for p in workers if p.exitcode not in (None, 0)]
            if crashed or time.time() > deadline:
                for process in workers:
                    process.kill()
                raise LoadError(f"load generator failed (exit codes {crashed or 'timeout'})") from None
    for process in workers:
        process.join(timeout=30)
    latencies = np.concatenate([np.asarray(r["latencies"]) for r in results]) if results else np.zeros(0)
    codes: dict[str, int] = {}
    for r in results:
        for code, count in r["codes"].items():
            codes[code] = codes.get(code, 0) + count
    summary = summarise(latencies, spec.duration)
    summary["codes"] = codes
    summary["errors"] = sum(v for k, v in codes.items() if k != "OK")
    summary["failed_share"] = summary["errors"] / max(sum(codes.values()), 1)
    summary["not_sent"] = sum(r["not_sent"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    summary["client_cpu_seconds"] = cpu
    summary["client_cpu_share_of_a_core"] = cpu / (spec.warmup + spec.duration)
    stages = np.array([s for r in results for s in r["stages"]], dtype=np.float64).reshape(-1, 6)
    if len(stages):
        summary["precomputed_share"] = float(stages[:, 4].mean())
        summary["cached_share"] = float(stages[:, 5].mean())
        summary["server_stages_ms"] = {name: {"p50": float(np.percentile(stages[:, j], 50)),
                                              "p99": float(np.percentile(stages[:, j], 99))}
                                       for j, name in enumerate(("recall", "rank", "blend", "total"))}
    return summary, latencies


def concurrency_sweep(spec: LoadSpec, levels: list[int], on_level=None) -> list[dict]:
    """Recommend and the floor in a closed loop at each concurrency, keeping the summaries."""
    rows = []
    for level in levels:
        if on_level:
            on_level(level)
        at = replace(spec, concurrency=level, rate=0.0)
        recommend, _ = run_load(at)
        floor, _ = run_load(at, floor=True)
        rows.append({"concurrency": level, "recommend": recommend, "floor": floor,
                     "p50_ratio_to_floor": recommend["p50_ms"] / floor["p50_ms"]
                     if recommend["count"] and floor["count"] else None})
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_serving(target: str, timeout: float, poll: float = 0.2, process: subprocess.Popen | None = None) -> None:
    """Return once the server at `target` reports SERVING; `process`, when given, is the server's,
    and its exit ends the wait."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.time() + timeout
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.time() < deadline:
            if process is not None and process.poll() is not None:
                raise LoadError(f"the server for {target} exited with status {process.returncode}")
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(poll)
    raise LoadError(f"server at {target} did not become SERVING within {timeout:.0f}s")


def spawn_server(bundles: Path, log_path: Path, watch_interval: float = 0.0, metrics_port: int = 0,
                 workers: int = 1, precomputed: bool = True, port: int | None = None,
                 extra: tuple = ()) -> tuple[subprocess.Popen, str]:
    """`movierec serve` in a child process on a loopback port (a free one unless given), once it
    reports SERVING; `extra` are more `serve` options. The log is appended to."""
    target = f"127.0.0.1:{port or free_port()}"
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "movierec.cli", "serve", "--bundles", str(bundles),
                                    "--address", target, "--metrics-port", str(metrics_port),
                                    "--watch-interval", str(watch_interval), "--workers", str(workers),
                                    "--precomputed" if precomputed else "--no-precomputed", *extra],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(target, 180, process=process)
    except LoadError:
        process.terminate()
        raise
    return process, target


def in_process(bundle_path: Path, mix: Mix, requests: int, seed: int = 0) -> dict:
    """Recall, rank and blend timed in this process, no network: microseconds per request, both
    as served (context-free requests of known users read the bundle's rankings) and with recall
    and rank run online for every request."""
    from threadpoolctl import threadpool_limits

    from movierec.bundle.loader import load_bundle
    from movierec.recall.index import set_search_threads
    from movierec.server.pipeline import Pipeline, RecommendInput

    threadpool_limits(1)  # as the server does
    set_search_threads(1)
    bundle = load_bundle(bundle_path)
    users = bundle.users.raw_id.to_numpy()
    items = bundle.items.raw_id.to_numpy()
    inputs = [RecommendInput(**fields) for fields in mix.draw(np.random.default_rng(seed), users, items, requests)]
    with_history = np.flatnonzero(np.diff(bundle.histories.sequences.indptr) > 0)   # not a time cut's new users
    candidates = [len(bundle.recaller.recall(bundle.context(int(u)))[0].items) for u in with_history[:50]]
    report = {"requests": requests, "bundle": bundle.version, "mix": asdict(mix),
              "mean_candidates_known_users": float(np.mean(candidates))}
    for name, use_precomputed in (("served", True), ("online", False)):
        pipeline = Pipeline(bundle, use_precomputed=use_precomputed)
        if use_precomputed and pipeline.precomputed is None:
            continue
        for request in inputs[:50]:
            pipeline.recommend(request)
        outputs = [pipeline.recommend(r) for r in inputs]
        timings = np.array([[o.timings_ms[s] for s in ("recall", "rank", "blend", "total")] for o in outputs])
        report[name] = {
            "precomputed_share": float(np.mean([o.precomputed for o in outputs])),
            "stages_us": {stage: {f"p{p:g}": float(np.percentile(timings[:, j], p) * 1000) for p in (50, 90, 99)}
                          for j, stage in enumerate(("recall", "rank", "blend", "total"))},
        }
    return report


def plot(recommend: np.ndarray, floor: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_hist, ax_cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for values, label, color in ((recommend, "Recommend", "tab:blue"), (floor, "health check (floor)", "tab:gray")):
        if len(values) == 0:
            continue
        ms = np.sort(values * 1000)
        ax_hist.hist(ms, bins=np.logspace(np.log10(max(ms.min(), 0.05)), np.log10(ms.max() + 1e-3), 60),
                     alpha=0.6, label=label, color=color)
        ax_cdf.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=label, color=color)
    ax_hist.set_xscale("log")
    ax_hist.set_xlabel("latency (ms)")
    ax_hist.set_ylabel("calls")
    ax_hist.legend()
    ax_cdf.set_xscale("log")
    ax_cdf.set_xlabel("latency (ms)")
    ax_cdf.set_ylabel("fraction of calls")
    ax_cdf.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": sys.platform,
            "max_rss_mb_client": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


