"""`movierec bench`: a latency run against a server (or one it spawns), with the gRPC floor,
an optional concurrency sweep and in-process stage timings; the report as JSON and a PNG."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from movierec.bundle.layout import current_version
from movierec.errors import ConfigError
from movierec.files import write_json
from movierec.options import option
from movierec.workdir import BUNDLES, WORKDIR

from . import loadtest
from .connect import TARGET_HELP, channel

MAX_SECONDS = 3600.0
MAX_RATE = 100_000.0
MAX_CONCURRENCY = 1024
MAX_FAILED_SHARE = 0.01


class BenchFailed(Exception):
    """The run could not measure what it should: the target did not answer, or too many calls failed."""


def served_version(target: str) -> str:
    """The version of the bundle the target serves, from GetBundleInfo."""
    import grpc

    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    with channel(target) as connection:
        try:
            return pb_grpc.RecommenderStub(connection).GetBundleInfo(pb.GetBundleInfoRequest(), timeout=10).version
        except grpc.RpcError as exc:
            raise BenchFailed(f"{target} does not answer GetBundleInfo ({exc.code().name}); "
                              "is a `movierec serve` running there?") from None


def failures(summary: dict) -> str:
    return ", ".join(f"{code} {count:,}" for code, count in sorted(summary["codes"].items()) if code != "OK")


@dataclass
class BenchConfig:
    target: str | None = option(None, TARGET_HELP)
    spawn: bool = option(False, "Start a server on --bundles for the run, and stop it after.", flag="--spawn")
    server_workers: int = option(1, "With --spawn: server processes (see `serve --workers`).")
    precomputed: bool = option(True, "With --spawn: serve the bundle's offline rankings (--no-precomputed: recall "
                               "and rank every request).", flag="--precomputed/--no-precomputed")
    server_answer_cache_mb: float = option(64.0, "With --spawn: MiB of answers each server worker keeps for repeated "
                                           "requests (see `serve --answer-cache-mb`; 0 = off).")
    bundles: Path = option(BUNDLES, "Bundle root: the request mix draws users and movies from its current bundle.")
    concurrency: int = option(8, "Closed loop: calls in flight (over all client processes).")
    rate: float = option(0.0, "Open loop: calls per second (0 = closed loop at --concurrency).")
    duration: float = option(10.0, "Seconds measured.")
    warmup: float = option(2.0, "Seconds of load before measuring.")
    processes: int = option(2, "Client processes generating the load.")
    new_users: float = option(0.1, "Share of requests from new users (side features only).")
    with_recent: float = option(0.1, "Share of requests from known users with 3 recent items.")
    with_filters: float = option(0.1, "Share of requests from known users filtering on one genre.")
    n: int = option(10, "Items per request.")
    floor: bool = option(True, "Also run the same load against the health check (the gRPC floor).")
    sweep: tuple = option((), "Closed loop at each of these concurrencies too (e.g. 1,2,4,8,16), Recommend and "
                          "floor, to find the one that maximises throughput.")
    in_process_requests: int = option(2000, "Requests for the in-process recall/rank/blend timing (0 = skip).")
    out: Path = option(WORKDIR / "bench", "Where to write bench.json and latency.png.")

    def __post_init__(self) -> None:
        if (self.target is None) == (not self.spawn):
            raise ConfigError("give exactly one of --target HOST:PORT or --spawn")
        if not all(math.isfinite(v) for v in (self.duration, self.warmup, self.rate, self.new_users, self.with_recent,
                                              self.with_filters)):
            raise ConfigError("--duration, --warmup, --rate and the shares of the mix must be finite numbers")
        if self.concurrency < 1 or self.processes < 1 or self.duration <= 0 or self.warmup < 0 or self.rate < 0:
            raise ConfigError("--concurrency and --processes must be >= 1, --duration > 0, --warmup and --rate >= 0")
        if self.duration + self.warmup > MAX_SECONDS or self.rate > MAX_RATE or self.concurrency > MAX_CONCURRENCY:
            raise ConfigError(f"a run is bounded: --warmup plus --duration at most {MAX_SECONDS:,} s, --rate at most "
                              f"{MAX_RATE:,}/s, --concurrency at most {MAX_CONCURRENCY:,}")
        if not 0 <= self.server_answer_cache_mb <= 1e6:
            raise ConfigError("--server-answer-cache-mb must be between 0 and 1,000,000")
        if any(level < 1 or level > MAX_CONCURRENCY for level in self.sweep):
            raise ConfigError(f"--sweep concurrencies must be between 1 and {MAX_CONCURRENCY:,}")
        self.sweep = tuple(sorted(set(self.sweep)))
        self.mix = loadtest.Mix(self.new_users, self.with_recent, self.with_filters, self.n)

    @property
    def mode(self) -> str:
        return f"open loop {self.rate:g}/s" if self.rate else f"closed loop, {self.concurrency} in flight"


def run_bench(config: BenchConfig, say: Callable[[str], None] = print) -> dict:
    """Run the benchmark, write bench.json and latency.png under `config.out`, return the report."""
    bundle_path = current_version(config.bundles)
    if bundle_path is None or not bundle_path.is_dir():
        raise ConfigError(f"{config.bundles} has no current bundle; run `movierec build`")
    users = pd.read_parquet(bundle_path / "users.parquet").raw_id.to_numpy().tolist()
    items = pd.read_parquet(bundle_path / "items.parquet").raw_id.to_numpy().tolist()
    config.out.mkdir(parents=True, exist_ok=True)
    server, target = None, config.target
    if config.spawn:
        say(f"starting a server on {bundle_path.name} ...")
        server, target = loadtest.spawn_server(config.bundles, config.out / "server.log",
                                               workers=config.server_workers, precomputed=config.precomputed,
                                               extra=("--answer-cache-mb", str(config.server_answer_cache_mb)))
    try:
        version = served_version(target)
        if version != bundle_path.name:
            say(f"the target serves bundle {version}; users and movies of the mix come from {bundle_path.name}")
        report = {"target": target, "bundle": version, "mix_bundle": bundle_path.name, "mix": vars(config.mix),
                  "machine": loadtest.machine(),
                  "server_workers": config.server_workers if config.spawn else None,
                  "server_precomputed": config.precomputed if config.spawn else None,
                  "server_answer_cache_mb": config.server_answer_cache_mb if config.spawn else None,
                  "date": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                  "load": {"concurrency": config.concurrency if not config.rate else None,
                           "rate": config.rate or None, "duration": config.duration, "warmup": config.warmup,
                           "processes": config.processes}}
        spec = loadtest.LoadSpec(target=target, duration=config.duration, warmup=config.warmup,
                                 concurrency=config.concurrency, rate=config.rate, processes=config.processes,
                                 mix=config.mix, users=users, items=items)
        say(f"Recommend: {config.mode}, {config.duration:g}s after {config.warmup:g}s warm-up, "
            f"{config.processes} client processes")
        report["recommend"], latencies = loadtest.run_load(spec)
        floor_latencies = np.zeros(0)
        if config.floor:
            say("floor: the same load against grpc.health.v1.Health/Check")
            report["floor"], floor_latencies = loadtest.run_load(spec, floor=True)
        if config.sweep:
            report["sweep"] = loadtest.concurrency_sweep(spec, list(config.sweep),
                                                         on_level=lambda level: say(f"sweep: {level} in flight"))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    if config.in_process_requests:
        say(f"in-process: {config.in_process_requests} requests through recall, rank and blend")
        report["in_process"] = loadtest.in_process(bundle_path, config.mix, config.in_process_requests)
    if config.floor and report["floor"]["count"] and report["recommend"]["count"]:
        report["p50_ratio_to_floor"] = report["recommend"]["p50_ms"] / report["floor"]["p50_ms"]
    write_json(config.out / "bench.json", report)
    loadtest.plot(latencies, floor_latencies, config.out / "latency.png",
                  f"movierec bench: {config.mode}, bundle {version}")
    return report


def failed_runs(report: dict) -> list[str]:
    """A line for each part of the run where more than MAX_FAILED_SHARE of the calls failed."""
    parts = [("Recommend", report["recommend"])] + ([("floor", report["floor"])] if "floor" in report else [])
    parts += [(f"sweep {row['concurrency']} in flight {name}", row[name])
              for row in report.get("sweep", []) for name in ("recommend", "floor")]
    return [f"{name}: {summary['failed_share']:.1%} of the calls failed ({failures(summary)})"
            for name, summary in parts if summary["failed_share"] > MAX_FAILED_SHARE]
