"""The served-quality benchmark behind the README's tables: for each split, choose the ranker
and the slot pool on validation data, then report what the server returns on the test data.

    python bench/served_quality.py --data DATA --out OUT \\
        --runs SASREC NCF                                  # trained on all ratings (leave-last-out)
        --cut 2000-12-01 --cut-runs SASREC NCF             # trained before --cut
        --valid-cut 2000-11-01 --valid-cut-runs SASREC NCF # trained before --valid-cut

Validation, never the test targets, picks the settings:

- last item: bundles with each user's last two items held out (`--hold-out-last 2`: the target
  is the validation item of the runs' own split); test: the last item (`--hold-out-last 1`).
- time cut: bundles of the ratings before --valid-cut, scored on each user's first item
  between --valid-cut and --cut; test: bundles of the ratings before --cut, scored on each
  user's first item after it.

On each validation, every ranker is tried at the default pool; the best served NDCG@10 wins.
Then the pool sizes are tried with it, and the smallest within 5% of the best is taken. The
test reports carry the ALS peer, and the served list of the previous defaults (the ncf
ranker, one global order of the popular and new slots) is scored beside them.

Writes OUT/<name>.json and .png for each report and OUT/summary.json; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.client.quality import QualityConfig, served_quality, write_report

RANKERS = ("ncf", "recall,channel=sasrec", "recall,channel=item2item")
POOLS = (25, 50, 100, 200, 400, 1000)
WITHIN = 0.05


def served_ndcg(result: dict) -> float:
    return result["metrics"]["served"]["all users"]["NDCG@10"]


def report(bundles: Path, out: Path, name: str, **settings) -> dict:
    result = served_quality(QualityConfig(bundles=bundles, **settings), say=lambda _: None)
    write_report(result, out / f"{name}.json", out / f"{name}.png")
    served = result["metrics"]["served"]["all users"]
    print(f"  {name}: {result['users']:,} users, served HR@10 {served['HR@10']:.4f} NDCG@10 {served['NDCG@10']:.4f}",
          flush=True)
    return result


def choose(data: Path, runs: list[Path], out: Path, name: str, split: dict, scoring: dict) -> tuple[str, int, dict]:
    """The ranker, then the pool, that serve best on this validation split."""
    by_ranker = {}
    for ranker in RANKERS:
        tag = f"{name}-{ranker.replace(',channel=', '-')}"
        root = out / "bundles" / tag
        build_bundle(BuildOptions(data, runs[0], runs[1], root, ranker=ranker, keep=1, **split))
        by_ranker[ranker] = (root, served_ndcg(report(root, out, tag, **scoring)))
    ranker = max(by_ranker, key=lambda r: by_ranker[r][1])
    root = by_ranker[ranker][0]
    by_pool = {pool: served_ndcg(report(root, out, f"{name}-pool-{pool}", slot_pool=pool, **scoring))
               for pool in POOLS}
    pool = min(p for p, value in by_pool.items() if value >= (1 - WITHIN) * max(by_pool.values()))
    print(f"{name}: ranker {ranker}, pool {pool}", flush=True)
    return ranker, pool, {"by_ranker": {r: v for r, (_, v) in by_ranker.items()}, "by_pool": by_pool}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs=2, required=True)
    parser.add_argument("--cut", required=True)
    parser.add_argument("--cut-runs", type=Path, nargs=2, required=True)
    parser.add_argument("--valid-cut", required=True)
    parser.add_argument("--valid-cut-runs", type=Path, nargs=2, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    splits = (  # label, tag, (validation runs, split, scoring), (test runs, split)
        ("last item", "last", (args.runs, {"hold_out_last": 2}, {}), (args.runs, {"hold_out_last": 1})),
        (f"time cut {args.cut}", "cut",
         (args.valid_cut_runs, {"hold_out_after": args.valid_cut}, {"targets_before": args.cut}),
         (args.cut_runs, {"hold_out_after": args.cut})),
    )
    summary, tests = {}, {}
    for label, tag, (runs, split, scoring), (test_runs, test_split) in splits:
        ranker, pool, validation = choose(args.data, runs, out, f"valid-{tag}", split, scoring)
        runs, split = test_runs, test_split
        root = out / "bundles" / f"test-{tag}"
        build_bundle(BuildOptions(args.data, runs[0], runs[1], root, ranker=ranker, keep=1, **split))
        tests[label] = report(root, out, f"test-{tag}", slot_pool=pool, peers=("als",))
        previous = out / "bundles" / f"test-{tag}-previous"
        build_bundle(BuildOptions(args.data, runs[0], runs[1], previous, ranker="ncf", keep=1, **split))
        tests[f"{label}, previous"] = report(previous, out, f"test-{tag}-previous", slot_order="global")
        summary[label] = {"ranker": ranker, "pool": pool, "validation": validation}
    summary["tests"] = {name: result["metrics"] for name, result in tests.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    labels = [label for label, *_ in splits]
    print("\n| list | " + " | ".join(f"{s}: HR@10 | NDCG@10" for s in labels) + " |")
    print("|---|" + "---|" * (2 * len(labels)))
    for name in list(tests[labels[0]]["metrics"]) + ["served, previous defaults"]:
        cells = []
        for label in labels:
            source = tests[f"{label}, previous"]["metrics"]["served"] if name.startswith("served, previous") \
                else tests[label]["metrics"][name]
            cells += [f"{source['all users']['HR@10']:.4f}", f"{source['all users']['NDCG@10']:.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for label in labels:
        print(f"{label}: ranker {summary[label]['ranker']}, pool {summary[label]['pool']}")


if __name__ == "__main__":
    main()
