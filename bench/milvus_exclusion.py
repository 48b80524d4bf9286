"""How Milvus should leave out what a request may not get: over-fetching (k plus the number of
blocked items, dropped afterwards) against a filter expression inside Milvus, by how many items
are blocked. Behind `recall/index/milvus.py`'s OVERFETCH_LIMIT.

    python bench/milvus_exclusion.py --bundles BUNDLES --milvus OUT/milvus.db [--queries 200]

Builds the sasrec channel's vectors of BUNDLES into a Milvus collection, then times searches
(k = 400, as the channel asks) with 0 to 3,000 random items blocked, each way. Prints a table
and writes the figures beside the Milvus file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from movierec.bundle.loader import load_bundle
from movierec.recall.context import ItemMask
from movierec.recall.index import IndexConfig
from movierec.recall.index import milvus as milvus_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", required=True)
    parser.add_argument("--milvus", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=400)
    args = parser.parse_args()
    bundle = load_bundle(args.bundles, with_rankings=False)
    sasrec = next(c for c in bundle.recaller.channels if c.name == "sasrec")
    vectors = sasrec.users.inference.w["item_emb.weight"]
    config = IndexConfig("milvus", "FLAT", {}, str(args.milvus)).named("bench", "sasrec")
    index = milvus_index.MilvusIndex.build(vectors[1:], np.arange(1, len(vectors)), config)
    rng = np.random.default_rng(0)
    users = rng.integers(1, len(bundle.users) + 1, args.queries)
    queries = sasrec.users.states[users]
    rows = []
    for blocked in (0, 50, 200, 1000, 2000, 3000):
        if blocked >= len(vectors) - args.k:
            continue
        masks = []
        for _ in users:
            allowed = np.ones(len(vectors), bool)
            allowed[rng.choice(np.arange(1, len(vectors)), blocked, replace=False)] = False
            masks.append(allowed)
        row = {"blocked": blocked}
        for name, limit in (("over-fetch", 10 ** 9), ("filter expression", -1)):
            milvus_index.OVERFETCH_LIMIT = limit
            started = time.perf_counter()
            for query, allowed in zip(queries, masks):
                index.search(query, args.k, ItemMask(allowed.copy()))
            row[name] = (time.perf_counter() - started) / len(users) * 1000
        rows.append(row)
        print(f"{blocked:>5} blocked: over-fetch {row['over-fetch']:.2f} ms, filter {row['filter expression']:.2f} ms",
              flush=True)
    milvus_index.drop_collection(config)
    (args.milvus.parent / "milvus_exclusion.json").write_text(json.dumps(rows, indent=2))
    print("\n| blocked items | over-fetch ms | filter expression ms |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {row['blocked']} | {row['over-fetch']:.2f} | {row['filter expression']:.2f} |")


if __name__ == "__main__":
    main()
