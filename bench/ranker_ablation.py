"""The ranker ablation behind the README's table: rankers trained on a validation bundle's
candidates, each served from a test bundle, scored on the test targets.

    python bench/ranker_ablation.py --data DATA --runs SASREC NCF --out OUT            # last item
    python bench/ranker_ablation.py --data DATA --runs SASREC NCF --out OUT \\
        --cut 2000-12-01 --valid-cut 2000-11-01 --valid-runs SASREC NCF                # time cut
    python bench/ranker_ablation.py --data DATA --runs SASREC NCF --out OUT \\
        --more-data EARLIER --more-runs SASREC NCF                                     # last item, more lists
    python bench/ranker_ablation.py --data DATA --runs SASREC NCF --out OUT \\
        --more-data E2 E4 --more-runs S2 N2 S4 N4                                      # and still more
    python bench/ranker_ablation.py ... --full-only --models lgbm --head 0 100         # a cascade's head
    python bench/ranker_ablation.py ... --second-sasrec S S2 S4                        # and a sasrec2 channel
    python bench/ranker_ablation.py ... --second-sasrec S S2 S4 --third-sasrec M M2 M4 # and a sasrec3 channel
    python bench/ranker_ablation.py ... --head 50 --scores-head 0 1                    # the head scored by every channel

Last item: the rankers train on a `--hold-out-last 2` bundle (target: the validation item)
and serve a `--hold-out-last 1` bundle (target: the test item). Time cut: they train on a
bundle of the ratings before --valid-cut (runs trained before it), on targets before --cut,
and serve a bundle of the ratings before --cut. With --more-data (a dataset written with
`movierec data --without-last 2`) and --more-runs trained on it, the rankers also train on
the lists of each user's third and fourth last items (`train ranker --more-lists`); a dataset
written with `--without-last 4` adds the fifth and sixth, and so on. With --second-sasrec (a
second SASRec run on --data, then one on each --more-data), every bundle also has a `sasrec2`
channel, whose scores the rankers read beside the first SASRec's; --third-sasrec adds a `sasrec3`
channel the same way. For each ranker, the personalized slot alone
and the served list (default quotas), HR@10 / NDCG@10 over every user with a target; "chosen"
is what `build --ranker-run` picks on validation among the full-feature runs. Writes
OUT/ablation.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from movierec.bundle.builder import DEFAULT_CHANNELS, BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.client.quality import served_validation
from movierec.models.ranker.config import DEFAULT_GROUPS, MODELS as MODEL_NAMES, RankerConfig
from movierec.models.ranker.train import train_ranker

MODELS = {"NCF over candidates (ncf-list)": "ncf", "LightGBM (lgbm)": "lgbm", "DIN (din)": "din"}
ABLATIONS = {"": None, " without recall signals": "recall", " without side features and posters": "side"}
VARIANTS = {  # name: (model, feature groups: the model's default, less one group)
    f"{name}{suffix}": (model, ",".join(g for g in DEFAULT_GROUPS[MODEL_NAMES[model]] if g != dropped))
    for suffix, dropped in ABLATIONS.items() for name, model in MODELS.items()
}


def score(root: Path) -> dict:
    bundle = load_bundle(root)
    return {"personalized slot": served_validation(bundle, shares={"personalized": 1.0}),
            "served": served_validation(bundle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs=2, required=True, help="SASRec and NCF runs of the test bundle")
    parser.add_argument("--valid-runs", type=Path, nargs=2, help="time cut: runs trained before --valid-cut")
    parser.add_argument("--more-data", type=Path, nargs="+", default=[],
                        help="last item: datasets without each user's last ratings (`movierec data --without-last`)")
    parser.add_argument("--more-runs", type=Path, nargs="+", default=[],
                        help="last item: SASRec and NCF runs trained on each --more-data, in its order")
    parser.add_argument("--second-sasrec", type=Path, nargs="+", default=[],
                        help="last item: a second SASRec run (another seed) on --data, then on each --more-data, "
                             "as the channel sasrec2")
    parser.add_argument("--second-sasrec-quota", type=int, default=50)
    parser.add_argument("--third-sasrec", type=Path, nargs="+", default=[],
                        help="last item: with --second-sasrec, a third SASRec run (another configuration) on --data, "
                             "then on each --more-data, as the channel sasrec3")
    parser.add_argument("--third-sasrec-quota", type=int, default=50)
    parser.add_argument("--cut", default="")
    parser.add_argument("--valid-cut", default="")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full-only", action="store_true", help="train each model with all its features only "
                        "(no ablations)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS.values()), default=list(MODELS.values()),
                        help="the rankers to train (default: all)")
    parser.add_argument("--attention-units", type=int, nargs="+", default=[RankerConfig.attention_units],
                        help="din: one run per value, each with all its features (default: the default units)")
    parser.add_argument("--head", type=int, nargs="+", default=[RankerConfig.head],
                        help="one run per value of `train ranker --head` for each model, each with all its features "
                             "(default: 0, every candidate)")
    parser.add_argument("--scores-head", type=int, nargs="+", choices=(0, 1), default=[int(RankerConfig.scores_head)],
                        help="one run per value of `train ranker --scores-head` (1) or not (0) for each model and "
                             "head (default: 0)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.cut:
        valid_split, test_split, targets_before = {"hold_out_after": args.valid_cut}, {"hold_out_after": args.cut}, args.cut
        valid_runs = args.valid_runs
    else:
        valid_split, test_split, targets_before, valid_runs = {"hold_out_last": 2}, {"hold_out_last": 1}, "", args.runs
    more_sasrec = {"sasrec2": (args.second_sasrec, args.second_sasrec_quota),
                   "sasrec3": (args.third_sasrec, args.third_sasrec_quota)}
    for flag, (extra, _) in zip(("--second-sasrec", "--third-sasrec"), more_sasrec.values()):
        if extra and (args.cut or len(extra) != 1 + len(args.more_data)):
            parser.error(f"{flag} takes a run on --data and one on each --more-data, on the last item split")
    if args.third_sasrec and not args.second_sasrec:
        parser.error("--third-sasrec goes with --second-sasrec")

    def channels(number: int) -> dict:
        """The channels of a bundle of --data (`number` 0) or of the `number`-th --more-data (from 1)."""
        if not args.second_sasrec:
            return {}
        return {"channels": (*DEFAULT_CHANNELS, *(f"{name}:{quota},run={extra[number]}"
                                                  for name, (extra, quota) in more_sasrec.items() if extra))}

    valid_root = out / "bundles" / "valid"
    build_bundle(BuildOptions(args.data, *valid_runs, valid_root, keep=1, **valid_split, **channels(0)))
    more_lists = []
    if args.more_data:
        if args.cut or len(args.more_runs) != 2 * len(args.more_data):
            parser.error("each --more-data goes with a SASRec and an NCF run in --more-runs, on the last item split")
        for number, data in enumerate(args.more_data):
            for last in (1, 2):
                more_lists.append(out / "bundles" / f"earlier-{number}-{last}")
                build_bundle(BuildOptions(data, *args.more_runs[2 * number:2 * number + 2], more_lists[-1], keep=1,
                                          hold_out_last=last, **channels(number + 1)))
    runs, results = {}, {}
    variants = {name: (model, groups, {}) for name, (model, groups) in VARIANTS.items()
                if model in args.models and (name in MODELS or not args.full_only)}

    def all_features(model: str) -> str:
        return ",".join(DEFAULT_GROUPS[MODEL_NAMES[model]])

    # one full-feature run per value of a knob, and of each knob before it; the default value
    # keeps the name it had
    for knob, values, label in (("attention_units", args.attention_units, "{} attention units"),
                                ("head", args.head, "head {}"),
                                ("scores_head", [bool(v) for v in args.scores_head], "every channel scoring it: {}")):
        default = getattr(RankerConfig, knob)
        for name, (model, groups, knobs) in list(variants.items()):
            if groups != all_features(model) or (knob == "attention_units" and model != "din"):
                continue
            variants.update({f"{name}, {label.format(value)}": (model, groups, {**knobs, knob: value})
                             for value in values if value != default})
            if default not in values:
                del variants[name]
    for name, (model, groups, knobs) in variants.items():
        started = time.perf_counter()
        run = out / "rankers" / "-".join([model, *groups.split(","), *(f"{k}{v}" for k, v in knobs.items())])
        validation = train_ranker(RankerConfig(model=model, bundles=valid_root, targets_before=targets_before,
                                               run_dir=run, features=groups, more_lists=tuple(more_lists), **knobs),
                                  served_validation,
                                  say=lambda _: None)
        runs[name] = run
        print(f"{name}: validation NDCG@10 {validation['NDCG@10']:.4f} (recall order "
              f"{validation['recall order']['NDCG@10']:.4f}), served {validation['served']['NDCG@10']:.4f} (as the "
              f"bundle serves {validation['recall order']['served']['NDCG@10']:.4f}), "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        results[name] = {"validation": validation}
    rankers = {"SASRec alone (recall order)": "recall,channel=sasrec", "today's NCF order (ncf)": "ncf",
               **{name: f"{MODEL_NAMES[variants[name][0]]},run={run}" for name, run in runs.items()}}
    full = [run for name, run in runs.items()   # the runs with all their model's features
            if variants[name][1] == all_features(variants[name][0])]
    for number, (name, ranker) in enumerate(list(rankers.items()) + [("chosen on validation", None)]):
        root = out / "bundles" / f"test-{number}"
        options = dict(ranker=ranker) if ranker else dict(ranker_runs=tuple(full))
        report = build_bundle(BuildOptions(args.data, *args.runs, root, keep=1, **test_split, **options, **channels(0)))
        results.setdefault(name, {})["test"] = score(root)
        results[name]["ranker"] = report.manifest["rank"]["name"]
        if not ranker:
            results[name]["choice"] = report.manifest["rank"]["choice"]["chosen"]
        test = results[name]["test"]
        print(f"{name}: personalized slot NDCG@10 {test['personalized slot']['NDCG@10']:.4f}, served "
              f"{test['served']['NDCG@10']:.4f}", flush=True)
    (out / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n| ranker | validation NDCG@10: order, served | personalized slot HR@10 / NDCG@10 | served HR@10 / NDCG@10 |")
    print("| --- | --- | --- | --- |")
    for name, result in results.items():
        if "test" not in result:
            continue
        valid = (f"{result['validation']['NDCG@10']:.4f}, {result['validation']['served']['NDCG@10']:.4f}"
                 if "validation" in result else "")
        p, s = result["test"]["personalized slot"], result["test"]["served"]
        print(f"| {name} | {valid} | {p['HR@10']:.4f} / {p['NDCG@10']:.4f} | {s['HR@10']:.4f} / {s['NDCG@10']:.4f} |")
    print("chosen:", results["chosen on validation"].get("choice"))


if __name__ == "__main__":
    main()
