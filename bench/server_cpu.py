"""Server CPU per request, by kind of request: where Recommend's cost over the gRPC floor goes.

Starts one server worker on the bundle root's current bundle, drives an open loop at a fixed
rate for each kind of request in turn (the health check, known users without context, new
users, known users with recent items, the default mix), and reads the server process's CPU
time from /proc before and after each. Linux only.

    python bench/server_cpu.py --bundles BUNDLES [--rate 400] [--duration 8] [--answer-cache-mb 0] [--json OUT]

The server keeps no answers by default here (`serve --answer-cache-mb 0`), so that each kind
costs its own work: a new user's side features repeat within seconds, and would be answered
from the kept answers otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from movierec.bundle.layout import current_version
from movierec.client import loadtest

KINDS = (  # name, shares of new users, with recent items, with a genre filter; floor
    ("health check (floor)", 0.0, 0.0, 0.0, True),
    ("known user, no context", 0.0, 0.0, 0.0, False),
    ("new user", 1.0, 0.0, 0.0, False),
    ("known user, 3 recent items", 0.0, 1.0, 0.0, False),
    ("known user, a genre filter", 0.0, 0.0, 1.0, False),
    ("default mix", 0.1, 0.1, 0.1, False),
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second (below saturation)")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--answer-cache-mb", type=float, default=0.0, help="the server's kept answers (MiB)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bundle = current_version(args.bundles)
    if bundle is None:
        parser.error(f"{args.bundles} has no current bundle")
    users = pd.read_parquet(bundle / "users.parquet").raw_id.to_numpy().tolist()
    items = pd.read_parquet(bundle / "items.parquet").raw_id.to_numpy().tolist()
    server, target = loadtest.spawn_server(args.bundles, Path(os.devnull), workers=1,
                                           extra=("--answer-cache-mb", str(args.answer_cache_mb)))
    rows = []
    try:
        for name, new_users, with_recent, with_filters, floor in KINDS:
            spec = loadtest.LoadSpec(target=target, duration=args.duration, warmup=1.0, rate=args.rate,
                                     processes=1, mix=loadtest.Mix(new_users, with_recent, with_filters, 10), concurrency=1,
                                     users=users, items=items)
            before = cpu_seconds(server.pid)
            summary, _ = loadtest.run_load(spec, floor=floor)
            used = cpu_seconds(server.pid) - before
            calls = summary["count"] * (spec.warmup + spec.duration) / spec.duration  # warm-up calls too
            rows.append({"kind": name, "server_cpu_us": 1e6 * used / calls,
                         "client_cpu_us": 1e6 * summary["client_cpu_seconds"] / calls,
                         "p50_ms": summary["p50_ms"], "errors": summary["errors"]})
            print(f"{name:28s} server CPU {rows[-1]['server_cpu_us']:6.0f} µs/request, "
                  f"client {rows[-1]['client_cpu_us']:5.0f} µs, p50 {summary['p50_ms']:.2f} ms, "
                  f"errors {summary['errors']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.json:
        args.json.write_text(json.dumps({"bundle": bundle.name, "rate": args.rate, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
