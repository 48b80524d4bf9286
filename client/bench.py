"""`movierec bench`: a latency run against a server (or one it spawns), with the gRPC floor,
an optional concurrency sweep and in-process stage timings; the report as JSON and a PNG."""

from __future__ import annotations

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


@dataclass
class BenchConfig:
    target: str | None = option(None, "host:port of a running `movierec serve`.")
    spawn: bool = option(False, "Start a server on --bundles for the run, and stop it after.", flag="--spawn")
    server_workers: int = option(1, "With --spawn: server processes (see `serve --workers`).")
    precomputed: bool = option(True, "With --spawn: serve the bundle's offline rankings (--no-precomputed: recall "
                               "and rank every request).", flag="--precomputed/--no-precomputed")
    bundles: Path = option(BUNDLES, "Bundle root: the request mix draws users and movies from its current bundle.")
    concurrency: int = option(8, "Closed loop: calls in flight (over all client processes).")
    rate: float = option(0.0, "Open loop: calls per second (0 = closed loop at --concurrency).")
    duration: float = option(10.0, "Seconds measured.")
    warmup: float = option(2.0, "Seconds of load before measuring.")
    processes: int = option(2, "Client processes generating the load.")
    new_users: float = option(0.1, "Share of requests from new users (side features only).")
    with_recent: float = option(0.1, "Share of requests from known users with 3 recent items.")
    n: int = option(10, "Items per request.")
    floor: bool = option(True, "Also run the same load against the health check (the gRPC floor).")
    sweep: tuple = option((), "Closed loop at each of these concurrencies too (e.g. 1,2,4,8,16), Recommend and "
                          "floor, to find the one that maximises throughput.")
    in_process_requests: int = option(2000, "Requests for the in-process recall/rank/blend timing (0 = skip).")
    out: Path = option(WORKDIR / "bench", "Where to write bench.json and latency.png.")

    def __post_init__(self) -> None:
        if (self.target is None) == (not self.spawn):
            raise ConfigError("give exactly one of --target HOST:PORT or --spawn")
        if self.concurrency < 1 or self.processes < 1 or self.duration <= 0 or self.warmup < 0 or self.rate < 0:
            raise ConfigError("--concurrency and --processes must be >= 1, --duration > 0, --warmup and --rate >= 0")
        if any(level < 1 for level in self.sweep):
            raise ConfigError("--sweep concurrencies must be >= 1")
        self.sweep = tuple(sorted(set(self.sweep)))
        self.mix = loadtest.Mix(self.new_users, self.with_recent, self.n)

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
                                               workers=config.server_workers, precomputed=config.precomputed)
    report = {"target": target, "bundle": bundle_path.name, "mix": vars(config.mix), "machine": loadtest.machine(),
              "server_workers": config.server_workers if config.spawn else None,
              "server_precomputed": config.precomputed if config.spawn else None,
              "date": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
              "load": {"concurrency": config.concurrency if not config.rate else None, "rate": config.rate or None,
                       "duration": config.duration, "warmup": config.warmup, "processes": config.processes}}
    floor_latencies = np.zeros(0)
    try:
        spec = loadtest.LoadSpec(target=target, duration=config.duration, warmup=config.warmup,
                                 concurrency=config.concurrency, rate=config.rate, processes=config.processes,
                                 mix=config.mix, users=users, items=items)
        say(f"Recommend: {config.mode}, {config.duration:g}s after {config.warmup:g}s warm-up, "
            f"{config.processes} client processes")
        report["recommend"], latencies = loadtest.run_load(spec)
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
                  f"movierec bench: {config.mode}, bundle {bundle_path.name}")
    return report
