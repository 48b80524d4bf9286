"""Scale figures for the README: vector indexes over synthetic catalogues, the per-user
rankings of a build on a cluster against in process, and two training processes against one.

    python bench/scale.py indexes --sizes 1000000,10000000 --out OUT [--milvus-max 1000000]
    python bench/scale.py rankings --data DATA --sasrec-run RUN --users 100000 --out OUT \\
        [--clusters dask:local:2,ray:local:2] [--redis redis://127.0.0.1:6379/0]
    python bench/scale.py training --data DATA --out OUT [--epochs 2]

- indexes: N random 64-d vectors (unit norm, clustered around 4,096 centres so that
  approximate indexes have structure to use), 200 queries drawn the same way; for FAISS Flat,
  IVF4096,Flat (nprobe 32), HNSW32 (efSearch 128), and Milvus (milvus-lite, FLAT and HNSW, up
  to --milvus-max): build seconds, resident memory added, p50 / p99 search latency of one query
  (k = 100, one thread), and recall@100 against exact search.
- rankings: a build of a synthetic dataset of N users (the histories of DATA's users, cycled,
  so each costs what a real one does; channels sasrec and item2item), its per-user rankings
  in process, then the users' SASRec states and the rankings on Dask and on Ray with 2 local
  workers (or the --clusters named), each checked equal to the in-process ones; and the bytes a
  user's ranking takes in the bundle's file, as a payload, and in a Redis server (--redis).
- training: SASRec epochs with `--nproc 1` and `--nproc 2` on DATA, seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

K = 100
QUERIES = 200
DIM = 64


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(4096, DIM)).astype(np.float32)
    vectors = np.empty((n, DIM), np.float32)
    for start in range(0, n, 1_000_000):
        end = min(start + 1_000_000, n)
        vectors[start:end] = centres[rng.integers(0, 4096, end - start)] + 0.5 * rng.normal(size=(end - start, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 4096, QUERIES)] + 0.5 * rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    return vectors, (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def time_searches(index, queries) -> tuple[np.ndarray, dict]:
    found, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query, K)
        seconds.append(time.perf_counter() - started)
        found.append(ids[0])
    ms = np.array(seconds) * 1000
    return np.array(found), {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def indexes(args) -> dict:
    from movierec.recall.index import IndexConfig, build_index, set_search_threads

    set_search_threads(1)
    report = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        rng = np.random.default_rng(n)
        vectors, queries = synthetic(n, rng)
        ids = np.arange(1, n + 1)
        exact = None
        configs = [("FAISS Flat", IndexConfig("faiss", "Flat")),
                   ("FAISS IVF4096,Flat nprobe=32", IndexConfig("faiss", "IVF4096,Flat", {"nprobe": 32})),
                   ("FAISS HNSW32 efSearch=128", IndexConfig("faiss", "HNSW32", {"efSearch": 128}))]
        if n <= args.milvus_max:
            milvus = str(Path(tempfile.mkdtemp(dir=args.out)) / "milvus.db")
            configs += [("Milvus FLAT", IndexConfig("milvus", "FLAT", {}, milvus).named("scale", f"flat{n}")),
                        ("Milvus HNSW M=32 ef=128", IndexConfig("milvus", "HNSW,M=32,efConstruction=128", {"ef": 128},
                                                                milvus).named("scale", f"hnsw{n}"))]
        for name, config in configs:
            before, started = rss_mb(), time.perf_counter()
            index = build_index(vectors, ids, config)
            built = time.perf_counter() - started
            found, latency = time_searches(index, queries)
            if exact is None:
                exact = found
            recall = float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(found, exact)]))
            row = {"build_seconds": round(built, 1), "memory_mb": round(rss_mb() - before), **latency,
                   "recall@100": recall}
            report[f"{n:,} items, {name}"] = row
            print(f"{n:,} items, {name}: {row}", flush=True)
            if config.backend == "milvus":
                from movierec.recall.index.milvus import drop_collection

                drop_collection(config)
            del index
    return report


def same_arrays(path: Path, other: Path) -> bool:
    """Whether two .npz files hold the same arrays, read one array at a time."""
    with np.load(path, allow_pickle=False) as these, np.load(other, allow_pickle=False) as those:
        return sorted(these.files) == sorted(those.files) and all(
            np.array_equal(these[name], those[name]) for name in these.files)


def ranking_sizes(path: Path, redis_url: str) -> dict:
    """Bytes a user: in the bundle's rankings file; as a payload (`UserRanking.to_bytes`, the
    mean over 1,000 users spread over the table); and the memory a Redis server grows by for each
    of those users' keys, written under a prefix of the benchmark's own and removed after."""
    from movierec.rank.precomputed import PrecomputedRankings

    table = PrecomputedRankings.load(path)
    sample = np.linspace(1, table.num_users, 1000).astype(int)
    payloads = [table.user(int(user)).to_bytes() for user in sample]
    sizes = {"file bytes a user": round(path.stat().st_size / table.num_users),
             "payload bytes a user": round(float(np.mean([len(payload) for payload in payloads])))}
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        prefix = f"movierec-bench-{uuid.uuid4().hex[:8]}"
        before = client.info("memory")["used_memory"]
        client.mset({f"{prefix}:{user}": payload for user, payload in zip(sample, payloads)})
        sizes["redis bytes a user"] = round((client.info("memory")["used_memory"] - before) / len(sample))
        client.delete(*(f"{prefix}:{user}" for user in sample))
    return sizes


def rankings(args) -> dict:
    """A build of a synthetic dataset of N users (each the history of a DATA user, cycled) in
    process: the manifest's seconds for the SASRec channel (the users' states) and for the
    rankings. Then the same states, and the same rankings from the bundle's files, on Dask and
    on Ray, timed the same way (the rankings computed, gathered into one table and saved), each
    checked equal to the in-process ones."""
    from dataclasses import replace

    import pandas as pd

    from movierec.blend.quotas import MAX_N
    from movierec.bundle.builder import BuildOptions, build_bundle
    from movierec.bundle.cluster import rank_users
    from movierec.dataset.store import load_dataset, to_release, write_dataset
    from movierec.dataset.sequences import Sequences
    from movierec.files import load_npy, load_npz
    from movierec.models.sasrec.states import user_states
    from movierec.models.sasrec.training import load_sasrec
    from movierec.rank.precomputed import join, pool_size

    base = load_dataset(args.data)
    release = to_release(base)
    copies = -(-args.users // base.num_users)
    ratings, users = [], []
    for copy in range(copies):
        offset = copy * 10_000_000
        ratings.append(release.ratings.assign(user_raw=release.ratings.user_raw + offset))
        users.append(release.users.assign(user_raw=release.users.user_raw + offset))
    ratings = pd.concat(ratings, ignore_index=True)
    keep = np.sort(ratings.user_raw.unique())[:args.users]
    ratings = ratings[ratings.user_raw.isin(keep)].reset_index(drop=True)
    ratings["row"] = np.arange(len(ratings))
    data = Path(args.out) / "synthetic-users"
    write_dataset(replace(release, ratings=ratings, users=pd.concat(users, ignore_index=True)), data,
                  f"{args.users:,} users cycled from {args.data}", {"ratings": {"path": str(args.data)}})
    del base, release, ratings, users   # a million users' ratings are gigabytes the engines' workers need more
    no_ncf = Path(args.out) / "no-ncf-run"   # neither channel nor the recall-order ranker reads one
    built = build_bundle(BuildOptions(data, args.sasrec_run, no_ncf, Path(args.out) / "bundles", keep=1,
                                      channels=("sasrec:200", "item2item:30")))
    states_seconds = built.timings["recall.sasrec_seconds"]   # the states, and the index of 1,682 items
    report = {"in process": {"states": round(states_seconds, 1), "rankings": round(built.timings["rankings_seconds"], 1)}}
    print(f"{args.users:,} users in process: {report['in process']}", flush=True)
    manifest = json.loads((built.path / "manifest.json").read_text())
    fragments, rank_fragment = manifest["recall"]["channels"], manifest["rank"]
    expected_states = load_npy(built.path / "recall.sasrec.users.npy")
    stored = load_npz(built.path / "histories.npz")
    sequences = Sequences(stored["indptr"], stored["items"])
    sequences = [sequences.of(user) for user in range(manifest["counts"]["users"] + 1)]
    model = load_sasrec(args.sasrec_run, manifest["counts"]["items"])
    pools = {slot: load_npy(built.path / f"{slot}.npy")[:manifest["options"]["slot_pool"]] for slot in ("popular", "new")}
    for cluster in args.clusters.split(","):
        started = time.perf_counter()
        states = user_states(model, sequences, cluster)
        states[0] = 0.0
        report[cluster] = {"states": round(time.perf_counter() - started, 1)}
        print(f"{args.users:,} users, states {cluster}: {report[cluster]['states']}s, equal to in process: "
              f"{np.array_equal(states, expected_states)}", flush=True)
        started = time.perf_counter()
        blocks = rank_users(cluster, built.path, fragments, rank_fragment, manifest["counts"]["users"],
                            manifest["counts"]["items"], manifest["options"]["slot_pool"], MAX_N, say=lambda _: None)
        table = join(blocks, tuple(f["name"] for f in fragments), tuple(pools), pool_size(pools), MAX_N)
        saved = Path(args.out) / f"rankings-{cluster.split(':')[0]}.npz"
        table.save(saved)
        report[cluster]["rankings"] = round(time.perf_counter() - started, 1)
        del blocks, table
        same = same_arrays(saved, built.path / "rankings.npz")
        print(f"{args.users:,} users, rankings {cluster}: {report[cluster]['rankings']}s, equal to in process: {same}",
              flush=True)
    report["sizes"] = ranking_sizes(built.path / "rankings.npz", args.redis)
    print(f"rankings: {report['sizes']}", flush=True)
    return report


def training(args) -> dict:
    report = {}
    for nproc in (1, 2):
        run = Path(args.out) / f"sasrec-nproc{nproc}"
        command = [sys.executable, "-m", "movierec.cli", "train", "sasrec", "--data", str(args.data), "--run-dir",
                   str(run), "--loss", "ce", "--hidden", "64", "--epochs", str(args.epochs), "--eval-every", "1000",
                   "--nproc", str(nproc), "--no-resume"]
        subprocess.run(command, check=True, capture_output=True)
        state = json.loads((run / "state.json").read_text())
        per_epoch = state["train_seconds"] / state["epoch"]
        report[f"{nproc} process(es)"] = round(per_epoch, 1)
        print(f"SASRec, {nproc} process(es): {per_epoch:.1f}s an epoch", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("indexes", "rankings", "training"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--milvus-max", type=int, default=1_000_000)
    parser.add_argument("--sasrec-run", type=Path)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clusters", default="dask:local:2,ray:local:2", help="rankings: the engines to time against in process")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                        help="rankings: a Redis server to measure a user's keys in ('' = none)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"indexes": indexes, "rankings": rankings, "training": training}[args.part](args)
    path = args.out / "scale.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved[args.part] = report
    path.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
