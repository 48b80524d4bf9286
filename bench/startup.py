"""A server worker's start-up: seconds from process start to SERVING, its RSS once serving and
after a few hundred requests, and whether Paddle was loaded into it.

    python bench/startup.py --bundles BUNDLES [--runs 5] [--python PYTHON] [--json OUT]

Each run starts `PYTHON -m movierec.cli serve` (one worker, no metrics, no watcher) on a free
loopback port, polls the health check every 20 ms, then sends 300 Recommend calls (known
users, a tenth with recent items) and stops it. Linux only (/proc). `--python` lets the same
script measure another installation of movierec, e.g. an older checkout in its own venv.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pandas as pd

from movierec.client.loadtest import free_port, wait_serving


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loads_paddle(pid: int) -> bool:
    return "libpaddle" in Path(f"/proc/{pid}/maps").read_text()


def one_run(python: str, bundles: Path, users: list[int], items: list[int]) -> dict:
    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    target = f"127.0.0.1:{free_port()}"
    started = time.perf_counter()
    process = subprocess.Popen([python, "-m", "movierec.cli", "serve", "--bundles", str(bundles), "--address", target,
                                "--metrics-port", "0", "--watch-interval", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(target, 120, poll=0.02, process=process)
        ready = time.perf_counter() - started
        rss_ready = rss_mb(process.pid)
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for k in range(300):
                request = pb.RecommendRequest(user_id=users[k % len(users)], n=10)
                if k % 10 == 0:
                    request.recent_item_ids.extend(items[k % len(items):k % len(items) + 3])
                stub.Recommend(request, timeout=10)
            return {"seconds_to_serving": ready, "rss_mb_serving": rss_ready, "rss_mb_after_300": rss_mb(process.pid),
                    "paddle_loaded": loads_paddle(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="interpreter whose movierec is measured")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    current = (args.bundles / "current").resolve()
    users = pd.read_parquet(current / "users.parquet").raw_id.tolist()
    items = pd.read_parquet(current / "items.parquet").raw_id.tolist()
    runs = [one_run(args.python, args.bundles, users[::7], items[::5]) for _ in range(args.runs)]
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "paddle_loaded"}
    summary["paddle_loaded"] = any(r["paddle_loaded"] for r in runs)
    report = {"bundle": current.name, "python": args.python, "runs": runs, "median": summary}
    print(json.dumps(report["median"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
