"""Ingestion benchmark: a real `movierec serve` (N workers) following an event store, written
to over gRPC. The README's figures.

    python bench/ingest.py --bundles BUNDLES --store STORE --out OUT [--workers 2] [--duration 20]

STORE holds the release the bundle was built from (as `movierec data` leaves it); a SQLite
store is copied into OUT first, a PostgreSQL one is written to (give a scratch database that
`movierec data --store postgresql://...` filled). Measures:

1. ingestion throughput, events/s: AddFeedback with one event per call and with batches of 100,
   4 callers in a closed loop;
2. ack-to-visible: an event on a user's top item, then Recommend on the connection that wrote it
   and on 3 others (spread over the workers) until the item is gone: p50 / p99 of each;
3. Recommend at 4 in flight (the default mix), without and with 200 events/s being ingested;
4. Recommend of users with fresh events (their rankings stored on ingest) against known users
   without, and the same users with the stored rankings ignored (`--no-precomputed` path).

Writes OUT/ingest.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

from movierec.bundle.loader import load_bundle
from movierec.client.loadtest import LoadSpec, Mix, run_load, spawn_server
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

TOKEN = "bench-ingest-admin-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
CALLERS = 4


def percentiles(values) -> dict:
    values = np.asarray(values) * 1000
    return {"count": int(len(values)), "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max())}


def throughput(target: str, users, items, batch: int, duration: float) -> dict:
    """Events per second over CALLERS closed-loop callers."""
    counts, latencies, stop = [0] * CALLERS, [], threading.Event()
    run = uuid.uuid4().hex[:8]

    def caller(index: int) -> None:
        rng = np.random.default_rng(index)
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = pb_grpc.IngestStub(channel)
            sent = 0
            while not stop.is_set():
                events = [pb.FeedbackEvent(event_id=f"tp-{run}-{index}-{sent + j}", user_id=int(rng.choice(users)),
                                           item_id=int(rng.choice(items)), kind=pb.EVENT_KIND_WATCH)
                          for j in range(batch)]
                started = time.perf_counter()
                reply = stub.AddFeedback(pb.AddFeedbackRequest(events=events), metadata=AUTH, timeout=30)
                latencies.append(time.perf_counter() - started)
                counts[index] += reply.accepted
                sent += batch

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"batch": batch, "events_per_second": sum(counts) / elapsed, "calls": len(latencies),
            "ack": percentiles(latencies)}


def ack_to_visible(target: str, users, trials: int) -> dict:
    """Seconds from the ack of an event on a user's top item to the first Recommend without it,
    on the writing connection and on the others."""
    channels = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
    stubs = [pb_grpc.RecommenderStub(c) for c in channels]
    ingest = pb_grpc.IngestStub(channels[0])
    same, everywhere = [], []
    try:
        for trial, user in enumerate(users[:trials]):
            response = stubs[0].Recommend(pb.RecommendRequest(user_id=int(user), n=10), timeout=10)
            item = next(i.item_id for i in response.items if i.slot == pb.SLOT_PERSONALIZED)
            ingest.AddFeedback(pb.AddFeedbackRequest(events=[pb.FeedbackEvent(
                event_id=f"vis-{uuid.uuid4().hex}", user_id=int(user), item_id=item, kind=pb.EVENT_KIND_WATCH)]),
                metadata=AUTH, timeout=10)
            acked = time.perf_counter()
            pending = set(range(len(stubs)))
            while pending:
                for k in sorted(pending):
                    listed = stubs[k].Recommend(pb.RecommendRequest(user_id=int(user), n=10), timeout=10).items
                    if item not in {i.item_id for i in listed}:
                        pending.discard(k)
                        if k == 0:
                            same.append(time.perf_counter() - acked)
                if time.perf_counter() - acked > 30:
                    raise RuntimeError(f"user {user}: the event was not visible on every connection in 30 s")
            everywhere.append(time.perf_counter() - acked)
    finally:
        for channel in channels:
            channel.close()
    return {"writing connection": percentiles(same), "every connection": percentiles(everywhere)}


class Trickle:
    """Events at a steady rate from a background thread (batches of 10 every 1/20 s at 200/s)."""

    def __init__(self, target: str, users, items, rate: float):
        self.target, self.users, self.items, self.rate = target, users, items, rate
        self.stop, self.sent = threading.Event(), 0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        rng, run = np.random.default_rng(7), uuid.uuid4().hex[:8]
        batch, interval = 10, 10 / self.rate
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.IngestStub(channel)
            next_at = time.perf_counter()
            while not self.stop.is_set():
                events = [pb.FeedbackEvent(event_id=f"tr-{run}-{self.sent + j}", user_id=int(rng.choice(self.users)),
                                           item_id=int(rng.choice(self.items)), kind=pb.EVENT_KIND_WATCH)
                          for j in range(batch)]
                stub.AddFeedback(pb.AddFeedbackRequest(events=events), metadata=AUTH, timeout=30)
                self.sent += batch
                next_at += interval
                time.sleep(max(next_at - time.perf_counter(), 0))

    def __enter__(self):
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.achieved = self.sent / (time.perf_counter() - self.started)


def recommend_load(target: str, users, items, duration: float, mix: Mix) -> dict:
    spec = LoadSpec(target=target, duration=duration, warmup=2.0, concurrency=4, rate=0.0, processes=2, mix=mix,
                    users=[int(u) for u in users], items=[int(i) for i in items])
    summary, _ = run_load(spec)
    return {key: summary[key] for key in ("p50_ms", "p99_ms", "throughput", "errors", "precomputed_share")
            if key in summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=Path, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--fresh-users", type=int, default=500)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    store = args.store
    if not store.startswith(("postgresql://", "postgres://")):
        for suffix in ("", "-wal", "-shm"):
            if Path(store + suffix).exists():
                shutil.copy(store + suffix, out / f"store.db{suffix}")
        store = str(out / "store.db")
    (out / "token").write_text(TOKEN)
    bundle = load_bundle(args.bundles, with_rankings=False)
    users = bundle.users.raw_id.to_numpy()
    items = bundle.items.raw_id.to_numpy()
    rng = np.random.default_rng(0)
    order = rng.permutation(users)
    visible_users, fresh_users, other_users = (order[:args.trials], order[args.trials:args.trials + args.fresh_users],
                                               order[args.trials + args.fresh_users:])
    report = {"bundle": bundle.version, "store": "postgresql" if store.startswith("postgres") else "sqlite",
              "workers": args.workers, "date": time.strftime("%Y-%m-%d")}
    process, target = spawn_server(args.bundles, out / "server.log", workers=args.workers,
                                   extra=("--store", store, "--admin-token-file", str(out / "token")))
    try:
        mix = Mix(new_users=0.1, with_recent=0.1, with_filters=0.1, n=10)
        report["recommend, idle"] = recommend_load(target, other_users, items, args.duration, mix)
        print("recommend idle", report["recommend, idle"], flush=True)
        with Trickle(target, other_users, items, 200.0) as trickle:
            report["recommend, ingesting"] = recommend_load(target, other_users, items, args.duration, mix)
        report["recommend, ingesting"]["events_per_second"] = trickle.achieved
        print("recommend while ingesting", report["recommend, ingesting"], flush=True)
        report["ack to visible"] = ack_to_visible(target, visible_users, args.trials)
        print("ack to visible", report["ack to visible"], flush=True)
        for batch in (1, 100):
            report[f"throughput, batch {batch}"] = throughput(target, other_users, items, batch, args.duration)
            print(f"throughput batch {batch}", report[f"throughput, batch {batch}"], flush=True)
        with grpc.insecure_channel(target) as channel:   # fresh events for some users, rankings stored on ingest
            stub = pb_grpc.IngestStub(channel)
            for start in range(0, len(fresh_users), 100):
                stub.AddFeedback(pb.AddFeedbackRequest(events=[
                    pb.FeedbackEvent(event_id=f"fresh-{u}-{k}", user_id=int(u), item_id=int(rng.choice(items)),
                                     rating=4) for u in fresh_users[start:start + 100] for k in range(3)]),
                    metadata=AUTH, timeout=60)
            sent = time.perf_counter()
            recommender = pb_grpc.RecommenderStub(channel)
            waiting = list(fresh_users)
            while waiting and time.perf_counter() - sent < 300:   # until the rankings computed after the acks serve
                waiting = [u for u in waiting if not recommender.Recommend(
                    pb.RecommendRequest(user_id=int(u), n=10), timeout=10).timings.precomputed]
            report["fresh rankings stored"] = {"users": len(fresh_users), "seconds": time.perf_counter() - sent,
                                               "not stored": len(waiting)}
            print("fresh rankings", report["fresh rankings stored"], flush=True)
        known = Mix(new_users=0, with_recent=0, with_filters=0, n=10)
        report["recommend, users with fresh events"] = recommend_load(target, fresh_users, items, args.duration, known)
        report["recommend, known users without"] = recommend_load(target, other_users, items, args.duration, known)
        print("fresh", report["recommend, users with fresh events"], "known", report["recommend, known users without"],
              flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    process, target = spawn_server(args.bundles, out / "server.log", workers=args.workers, precomputed=False,
                                   extra=("--store", store, "--admin-token-file", str(out / "token")))
    try:
        report["recommend, users with fresh events, computed per request"] = recommend_load(
            target, fresh_users, items, args.duration, Mix(new_users=0, with_recent=0, with_filters=0, n=10))
        print("fresh, computed per request", report["recommend, users with fresh events, computed per request"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    (out / "ingest.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
