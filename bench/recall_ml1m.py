"""Candidate recall@K per channel and merged, and bundle build time, on ML-1M.

    python bench/recall_ml1m.py --data DATA --sasrec-run RUN --ncf-run RUN [--bundles DIR] [--index flat]

Builds a bundle with each user's last item held out (`--hold-out-last`), then asks, for every
user: is that held-out item among the K candidates of each channel, and of the merged list
(channel quotas scaled to K)? Prints a table and writes JSON next to the bundle.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.dataset.sequences import chronological
from movierec.dataset.store import load_dataset
from movierec.recall.merge import merge
from movierec.recall.recaller import DEFAULT_QUOTAS

KS = (50, 100, 200, 500)


def scaled_quotas(k: int) -> dict[str, int]:
    total = sum(DEFAULT_QUOTAS.values())
    quotas = {name: int(round(k * q / total)) for name, q in DEFAULT_QUOTAS.items()}
    quotas["sasrec"] += k - sum(quotas.values())
    return quotas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--sasrec-run", required=True, type=Path)
    parser.add_argument("--ncf-run", required=True, type=Path)
    parser.add_argument("--bundles", type=Path, default=Path("movierec-work/bench-bundles"))
    parser.add_argument("--index", default="Flat", help="FAISS index_factory string")
    args = parser.parse_args()

    train_seconds = {name: json.loads((run / "metrics.json").read_text())["train_seconds"]
                     for name, run in (("sasrec", args.sasrec_run), ("ncf", args.ncf_run))
                     if (run / "metrics.json").is_file()}
    started = time.perf_counter()
    report = build_bundle(BuildOptions(args.data, args.sasrec_run, args.ncf_run, args.bundles,
                                       index=args.index, hold_out_last=1))
    build_seconds = time.perf_counter() - started
    bundle = load_bundle(report.path)
    dataset = load_dataset(args.data)
    sequences = chronological(dataset.ratings, dataset.num_users)
    lengths = sequences.lengths()
    users = np.flatnonzero(lengths >= 3)
    targets = sequences.items[sequences.indptr[users + 1] - 1]

    recaller = bundle.recaller
    channels = recaller.names
    hits = {f"{name}@{k}": 0 for name in (*channels, "merged") for k in KS}
    started = time.perf_counter()
    for user, target in zip(users, targets):
        context = bundle.context(int(user))
        results = recaller.retrieve(context, {name: max(KS) for name in channels})
        for name, result in zip(channels, results):
            if result is None:
                continue
            position = np.flatnonzero(result.items == target)
            for k in KS:
                hits[f"{name}@{k}"] += int(len(position) > 0 and position[0] < k)
        for k in KS:
            merged = merge(channels, results, scaled_quotas(k), context.allowed)
            hits[f"merged@{k}"] += int(target in merged.items)
    recall_seconds = time.perf_counter() - started
    recall = {key: value / len(users) for key, value in hits.items()}

    print(f"ML-1M candidate recall@K of the held-out last item, {len(users):,} users "
          f"(ratings: {bundle.manifest['dataset']['ratings_file']['path']})")
    print("| channel | " + " | ".join(f"recall@{k}" for k in KS) + " |")
    print("|---|" + "---|" * len(KS))
    for name in (*channels, "merged"):
        print(f"| {name} | " + " | ".join(f"{recall[f'{name}@{k}']:.4f}" for k in KS) + " |")
    timings = {"train_seconds": train_seconds, **report.timings, "build_total_seconds": build_seconds}
    print("build timings (s): " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()}))
    print(f"recall pass: {recall_seconds:.1f}s for {len(users):,} users x {len(channels)} channels x K up to {max(KS)}")
    out = args.bundles / "recall_benchmark.json"
    out.write_text(json.dumps({"recall": recall, "users": int(len(users)), "timings": timings,
                               "index": report.manifest["index"], "bundle": report.version}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
