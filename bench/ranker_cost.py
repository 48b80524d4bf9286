"""Request-path cost of a bundle's ranker: `ranker.score` over each user's merged candidates
(about 300), one thread, as a server worker runs it, with the channels' scores of the head
where the ranker reads them for every head candidate (`score_head`); for a ranker that reads
the whole feature matrix (`lgbm`), also the matrix alone (`rank/features.py`), the rest being the model.

    python bench/ranker_cost.py --bundles BUNDLES [--users 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from movierec.bundle.loader import load_bundle
from movierec.rank.ranker import head_rows, score_head
from movierec.recall.index import search_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", required=True)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    bundle = load_bundle(args.bundles, with_rankings=False)
    users = np.linspace(1, len(bundle.users), args.users).astype(int)
    seconds, sizes, matrix_seconds = [], [], []
    features = getattr(bundle.ranker, "features", None) if not hasattr(bundle.ranker, "projection") else None
    with threadpool_limits(1), search_threads(1):
        for user in users:
            context = bundle.context(int(user))
            merged, _ = bundle.recaller.recall(context)
            scored = score_head(bundle.ranker, context, bundle.recaller, merged)
            bundle.ranker.score(context, scored)  # warm
            started = time.perf_counter()
            bundle.ranker.score(context, score_head(bundle.ranker, context, bundle.recaller, merged))
            seconds.append(time.perf_counter() - started)
            sizes.append(len(merged.items))
            if features is not None:
                head = head_rows(merged, getattr(bundle.ranker, "head", 0))
                scored = scored if head is None else scored.subset(head)
                started = time.perf_counter()
                features.matrix(context, scored)
                matrix_seconds.append(time.perf_counter() - started)
    us = np.array(seconds) * 1e6
    print(f"ranker {bundle.manifest['rank']['name']} on {bundle.version}: {len(users)} users, "
          f"{np.mean(sizes):.0f} candidates on average, head {getattr(bundle.ranker, 'head', 0) or 'all'}; score p50 {np.median(us):.0f} us, "
          f"p90 {np.percentile(us, 90):.0f} us")
    if matrix_seconds:
        us = np.array(matrix_seconds) * 1e6
        print(f"of which the feature matrix ({features.width} columns): p50 {np.median(us):.0f} us, "
              f"p90 {np.percentile(us, 90):.0f} us")


if __name__ == "__main__":
    main()
