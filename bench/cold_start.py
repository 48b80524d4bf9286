"""Cold start, measured: new movies, new users, and what the two cold-start channels do for
known users. The README's tables.

    python bench/cold_start.py --data DATA --runs SASREC NCF --out OUT [--share 0.1] \\
        [--sasrec-epochs 30 --ncf-epochs 5 --tower-epochs 20] [--sasrec-args "--hidden 64 ..."]

- New movies: a share of the rated movies, drawn at random, leave the dataset with all their
  ratings; every model is trained without them, the bundle is built, and then they come back
  through the event store's item table with their content only (title, genres, year, plot),
  as `UpsertItems` brings them, while the bundle is served. Scored on every user who rated one:
  each list of 10 (over the whole catalogue, the user's history excluded) hits when it holds
  one of the user's new movies: the content channel alone, the SASRec channel alone (the new
  movies reach it through the content map), the served list, popularity and random; and the
  same among the new movies alone (content against random). Also: how many served lists hold
  a new movie at all.
- New users: a share of the users leave the dataset entirely; the models are trained without
  them; each is then served as a new user known by side features, and after their first 1, 3
  and 5 events sent as recent items; the target is the next event. The two-tower channel alone,
  the personalized slot (quotas personalized = 1) of a bundle with it, demographic popularity
  (same gender and age) and global popularity.
- Known users: `--hold-out-last 1` bundles from the full runs with and without each new
  channel: whether the held-out item is among the merged candidates (quotas scaled to 100 and
  to 300 in all), and the served list's and personalized slot's HR@10 / NDCG@10.

Writes OUT/cold_start.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.client.quality import QualityConfig, served_quality
from movierec.dataset.evaluation import list_metrics
from movierec.dataset.sequences import Histories, chronological
from movierec.dataset.store import load_dataset, to_release
from movierec.recall.recaller import DEFAULT_QUOTAS
from movierec.server.fresh import catch_up
from movierec.server.pipeline import Pipeline, RecommendInput
from movierec.store.datasets import import_and_write
from movierec.store.events import EventStore, ItemRecord

BASE = tuple(f"{name}:{quota}" for name, quota in DEFAULT_QUOTAS.items())
K = 10


def movierec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "movierec.cli", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def train_models(data: Path, out: Path, args, runs: tuple | None = None) -> dict:
    """SASRec and NCF (unless given), the content run, the two-tower run, on `data`."""
    paths = {"sasrec": out / "sasrec", "ncf": out / "ncf", "content": out / "content", "tower": out / "two_tower"}
    if runs:
        paths["sasrec"], paths["ncf"] = runs
    else:
        movierec("train", "sasrec", "--data", data, "--run-dir", paths["sasrec"], "--loss", "ce",
                 "--epochs", args.sasrec_epochs, *shlex.split(args.sasrec_args))
        movierec("train", "ncf", "--data", data, "--run-dir", paths["ncf"], "--epochs", args.ncf_epochs, "--no-posters")
    movierec("train", "content", "--data", data, "--sasrec-run", paths["sasrec"], "--run-dir", paths["content"])
    movierec("train", "two-tower", "--data", data, "--content-run", paths["content"], "--run-dir", paths["tower"],
             "--epochs", args.tower_epochs)
    return paths


def metrics(positions) -> dict:
    return {key: value for key, value in list_metrics(np.asarray(positions), [K]).items() if not key.startswith("MRR")}


def first_hit(items, targets: set) -> int:
    for position, item in enumerate(np.asarray(items).tolist()):
        if item in targets:
            return position
    return -1


def new_movies(dataset, args, out: Path) -> dict:
    rng = np.random.default_rng(args.seed)
    raw = dataset.item_raw_ids()[1:]
    cold = set(rng.choice(raw, int(round(args.share * len(raw))), replace=False).tolist())
    store = EventStore(out / "store.db")
    data = out / "data"
    import_and_write(store, to_release(dataset, drop_movies=list(cold)), data, "cold-start variant",
                     {"ratings": {"path": f"{dataset.path} without {len(cold)} movies"}})
    runs = train_models(data, out, args)
    build_bundle(BuildOptions(data, runs["sasrec"], runs["ncf"], out / "bundles", content_run=runs["content"],
                              channels=BASE + ("content:30",)))
    items = dataset.items.set_index("raw_id")
    store.upsert_items([ItemRecord(int(m), items.title[m], int(items.year[m]), tuple(filter(None, items.genres[m].split("|"))),
                                   items["plot"][m] if "plot" in items else "") for m in sorted(cold)])
    bundle = load_bundle(out / "bundles")
    pipeline = Pipeline(bundle)
    pipeline.fresh = catch_up(pipeline, store)
    catalogue = pipeline.catalogue
    cold_ids = np.array(sorted(catalogue.item_of_raw[m] for m in cold))
    users_raw = dataset.user_raw_ids()
    channels = {c.name: c for c in bundle.recaller.channels}
    owners = users_raw[dataset.ratings.user.to_numpy()]
    rated = dataset.item_raw_ids()[dataset.ratings.item.to_numpy()]
    targets_of: dict[int, set] = {}
    for user, movie in zip(owners.tolist(), rated.tolist()):
        if movie in cold:
            targets_of.setdefault(user, set()).add(catalogue.item_of_raw[movie])
    positions = {name: [] for name in ("content channel", "sasrec channel", "served", "popularity", "random",
                                       "content among the new movies", "random among the new movies")}
    with_new = []
    for user in users_raw[1:].tolist():
        served = pipeline.recommend(RecommendInput(user_id=user, n=K))
        served_ids = np.array([catalogue.item_of_raw[m] for m in served.items.tolist()])
        with_new.append(int(np.isin(served_ids, cold_ids).sum()))
        if user not in targets_of:
            continue
        targets = targets_of[user]
        context = pipeline.context_of(user)
        allowed = context.allowed
        positions["served"].append(first_hit(served_ids, targets))
        for name in ("content", "sasrec"):
            found = channels[name].retrieve(context, K, allowed)
            positions[f"{name} channel"].append(first_hit(found.items if found else [], targets))
        popular = bundle.popular[allowed.array[bundle.popular]][:K]
        positions["popularity"].append(first_hit(popular, targets))
        candidates = np.flatnonzero(allowed.array)
        positions["random"].append(first_hit(rng.choice(candidates, K, replace=False), targets))
        query = channels["content"].query(context)
        if query is not None:
            order = cold_ids[np.argsort(-(channels["content"].vectors[cold_ids] @ query), kind="stable")]
            positions["content among the new movies"].append(first_hit(order[:K], targets))
        else:
            positions["content among the new movies"].append(-1)
        positions["random among the new movies"].append(first_hit(rng.choice(cold_ids, K, replace=False), targets))
    return {"new movies": len(cold), "users scored": len(positions["served"]),
            "metrics": {name: metrics(p) for name, p in positions.items()},
            "served lists holding a new movie": float(np.mean(np.array(with_new) > 0)),
            "new movies per served list": float(np.mean(with_new))}


def new_users(dataset, args, out: Path) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    sequences = chronological(dataset.ratings, dataset.num_users)
    eligible = np.flatnonzero(sequences.lengths() >= 6)
    cold = rng.choice(eligible, int(round(args.share * dataset.num_users)), replace=False)
    users_raw = dataset.user_raw_ids()
    data = out / "data"
    store = EventStore(out / "store.db")
    import_and_write(store, to_release(dataset, drop_users=users_raw[cold].tolist()), data, "cold-start variant",
                     {"ratings": {"path": f"{dataset.path} without {len(cold)} users"}})
    runs = train_models(data, out, args)
    build_bundle(BuildOptions(data, runs["sasrec"], runs["ncf"], out / "bundles", content_run=runs["content"],
                              channels=BASE + (f"two_tower:50,run={runs['tower']}",)))
    bundle = load_bundle(out / "bundles")
    pipeline = Pipeline(bundle)
    tower = next(c for c in bundle.recaller.channels if c.name == "two_tower")
    item_raw = dataset.item_raw_ids()
    users = dataset.users.set_index("user")
    out_metrics = {}
    for known in (0, 1, 3, 5):
        positions = {name: [] for name in ("two-tower channel", "personalized slot", "demographic popularity",
                                           "global popularity")}
        for user in cold.tolist():
            row = users.loc[user]
            history = [pipeline.catalogue.item_of_raw.get(int(m), 0) for m in item_raw[sequences.of(user)]]
            recent, target = [i for i in history[:known] if i], history[known]
            if not target:
                continue
            request = RecommendInput(user_id=0, n=K, gender=row.gender, age=int(row.age), occupation=row.occupation,
                                     zip_code=row.zip_prefix, recent=[int(item_raw[i]) for i in recent],
                                     shares={"personalized": 1.0})
            served = pipeline.recommend(request)
            positions["personalized slot"].append(
                first_hit([pipeline.catalogue.item_of_raw[m] for m in served.items.tolist()], {target}))
            features = bundle.encoder.encode_request(row.gender, int(row.age), row.occupation, row.zip_prefix)
            context = bundle.context(0, features, np.array(recent, dtype=np.int64))
            found = tower.retrieve(context, K, context.allowed)
            positions["two-tower channel"].append(first_hit(found.items, {target}))
            group = pipeline.demographic.ranked(features)
            group = group[0] if group else bundle.popular
            positions["demographic popularity"].append(first_hit(group[context.allowed.array[group]][:K], {target}))
            positions["global popularity"].append(
                first_hit(bundle.popular[context.allowed.array[bundle.popular]][:K], {target}))
        out_metrics[f"after {known} events"] = {name: metrics(p) for name, p in positions.items()}
    return {"new users": int(len(cold)), "metrics": out_metrics}


def known_users(dataset, args, out: Path) -> dict:
    runs = train_models(args.data, out, args, runs=args.runs)
    variants = {"base": BASE, "+ content": BASE + ("content:30",),
                "+ two_tower": BASE + (f"two_tower:50,run={runs['tower']}",),
                "+ both": BASE + ("content:30", f"two_tower:50,run={runs['tower']}")}
    report = {}
    histories = Histories.from_ratings(dataset.ratings, dataset.num_users)
    for name, channels in variants.items():
        root = out / "bundles" / name.replace(" ", "").replace("+", "plus-")
        build_bundle(BuildOptions(args.data, runs["sasrec"], runs["ncf"], root, content_run=runs["content"],
                                  channels=channels, hold_out_last=1, keep=1))
        bundle = load_bundle(root, with_rankings=False)
        recall = {}
        for total in (100, 300):
            scale = total / sum(bundle.recaller.quotas.values())
            quotas = {c: max(1, round(q * scale)) for c, q in bundle.recaller.quotas.items()}
            hits = []
            for user in range(1, dataset.num_users + 1):
                sequence = histories.of(user)
                context = bundle.context(user)
                merged, _ = bundle.recaller.recall(context, quotas)
                hits.append(sequence[-1] in set(merged.items.tolist()))
            recall[f"recall@{total}"] = float(np.mean(hits))
        quality = served_quality(QualityConfig(bundles=root), say=lambda _: None)["metrics"]
        report[name] = {**recall, **{f"{kind} {metric}": quality[kind]["all users"][metric]
                                     for kind in ("served", "personalized slot") for metric in ("HR@10", "NDCG@10")}}
        print(name, report[name], flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs=2, required=True, help="SASRec and NCF runs on all of DATA")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sasrec-epochs", type=int, default=30)
    parser.add_argument("--sasrec-args", default="")
    parser.add_argument("--ncf-epochs", type=int, default=5)
    parser.add_argument("--tower-epochs", type=int, default=20)
    parser.add_argument("--parts", default="movies,users,known")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    report_path = args.out / "cold_start.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    for part, run in (("movies", new_movies), ("users", new_users), ("known", known_users)):
        if part in args.parts.split(","):
            report[part] = run(dataset, args, args.out / part)
            args.out.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=2))
            print(json.dumps(report[part], indent=2), flush=True)


if __name__ == "__main__":
    main()
