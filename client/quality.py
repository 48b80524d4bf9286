"""The served-quality report (`movierec eval --bundles ...`): what a caller receives, measured
on held-out data, beside each recall channel alone, popularity and a peer library.

The bundle must have been built from a held-out split, which its manifest records:

- `--hold-out-last N`: each user's history without the last N items; the target is the first
  of them (N = 1: the test item of the runs' leave-last-out split, N = 2: the validation item);
- `--hold-out-after DATE`: the ratings before the cut; the target is each user's first item
  after it. Users with no rating before the cut are new users, known only by side features.

Every user with a target gets the real Recommend pipeline's list (in process, or over gRPC
with `target`), the personalized slot alone (quotas personalized = 1), each recall channel's
own top K, the popular list, and each peer's top K, all without the user's seen items. Scores:
HR@K, NDCG@K and MRR@K over all users and per segment of history length, the catalogue
coverage of each kind of list and its intra-list genre diversity.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from movierec.bundle.heldout import held_out
from movierec.bundle.loader import Bundle, load_bundle
from movierec.dataset.evaluation import list_metrics, ndcg_per_list, position_in_lists
from movierec.dataset.sequences import Histories
from movierec.dataset.store import load_dataset
from movierec.errors import ConfigError
from movierec.files import write_json
from movierec.options import option
from movierec.blend.lists import SLOT_POOL
from movierec.server.pipeline import LIST_ORDERS, SLOT_ORDERS, Pipeline, RecommendInput
from movierec.workdir import BUNDLES

SEGMENTS = (("new users", 0, 0), ("history 1-19", 1, 19), ("history 20-49", 20, 49), ("history 50-199", 50, 199),
            ("history 200+", 200, None))


@dataclass
class QualityConfig:
    bundles: Path = option(BUNDLES, "A bundle built from a held-out split (--hold-out-last or --hold-out-after), "
                           "or its root.")
    data_dir: Path | None = option(None, "The dataset the bundle was built from, with the held-out ratings "
                                   "(default: the one its manifest names).", cli=False)
    target: str | None = option(None, "Ask this running server for the served lists, over gRPC (it must serve "
                                "the same bundle); by default they come from the server's code in process.")
    k: tuple = option((10,), "Cut-offs for HR@K, NDCG@K and MRR@K.", cli=False)
    peers: tuple = option((), "Peer libraries trained on the same histories, for comparison: als (implicit's ALS).",
                          flag="--peer", repeat=True)
    targets_before: str = option("", "With a --hold-out-after bundle: count only users whose first item after the "
                                 "cut comes before this date (a validation period that ends where a test "
                                 "period starts).")
    slot_pool: int = option(SLOT_POOL, "As `serve --slot-pool`: the pools of the popular and new slots.")
    slot_order: str = option("personal", "As `serve --slot-order`: 'personal' or 'global'.")
    list_order: str = option("score", "As `serve --list-order`: 'score' or 'slots'.")

    def __post_init__(self) -> None:
        self.k = tuple(sorted(set(self.k))) or (10,)
        if min(self.k) <= 0 or max(self.k) > 200:
            raise ConfigError("--k must be between 1 and 200")
        if self.slot_order not in SLOT_ORDERS or self.slot_pool < 1 or self.list_order not in LIST_ORDERS:
            raise ConfigError(f"--slot-pool must be at least 1, --slot-order one of {', '.join(SLOT_ORDERS)} and "
                              f"--list-order one of {', '.join(LIST_ORDERS)}")
        from movierec.models.peers import PEERS

        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise ConfigError(f"unknown peer {unknown[0]!r}; known: {', '.join(PEERS)}")


def genre_diversity(lists: list[np.ndarray], genres: np.ndarray) -> float:
    """Mean over lists of the mean Jaccard distance between the genre sets of their items."""
    values = []
    for items in lists:
        if len(items) < 2:
            continue
        g = genres[items].astype(np.float32)
        inter = g @ g.T
        sizes = g.sum(axis=1)
        union = sizes[:, None] + sizes[None, :] - inter
        distance = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        upper = np.triu_indices(len(items), 1)
        values.append(float(distance[upper].mean()))
    return float(np.mean(values)) if values else 0.0


class Served:
    """The served lists of users, from the pipeline in process or from a server over gRPC."""

    def __init__(self, bundle: Bundle, config: QualityConfig):
        self.bundle = bundle
        self.raw_users = bundle.user_raw_ids()
        self.target = config.target
        if config.target is None:
            self.pipeline = Pipeline(bundle, slot_pool=config.slot_pool, slot_order=config.slot_order,
                                     list_order=config.list_order)
        else:
            from movierec.client.connect import channel
            from movierec.server.v1 import recommender_pb2 as pb
            from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

            self.pb = pb
            self.connection = channel(config.target)
            self.stub = pb_grpc.RecommenderStub(self.connection)
            serving = self.stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=10).version
            if serving != bundle.version:
                raise ConfigError(f"{config.target} serves bundle {serving}, not {bundle.version}")

    def list(self, user: int, n: int, shares: dict | None = None) -> np.ndarray:
        """Contiguous item ids served to contiguous user `user`."""
        raw = int(self.raw_users[user])
        if self.target is None:
            raw_items = self.pipeline.recommend(RecommendInput(user_id=raw, n=n, shares=shares)).items
        else:
            pb = self.pb
            request = pb.RecommendRequest(user_id=raw, n=n)
            if shares:
                request.quotas.CopyFrom(pb.Quotas(**shares))
            raw_items = [i.item_id for i in self.stub.Recommend(request, timeout=10).items]
        return self.bundle.item_ids(raw_items)


def served_validation(bundle: Bundle, ranker=None, users: np.ndarray | None = None, targets_before: str = "",
                      k: int = 10, shares: dict | None = None, gains: bool = False) -> dict:
    """HR@k and NDCG@k of the lists the server would return (the bundle's slot pool; default
    quotas unless `shares`) to the users of a held-out bundle (or those of them in `users`),
    scored on their targets, with `ranker` in the place of the bundle's own when given: how
    `movierec train ranker` scores a ranker run by what a caller receives, so that `movierec
    build --ranker-run` chooses by it. With `gains`, each user's NDCG@k too (`gains`, users in
    the held-out order), for a paired comparison of two rankers on the same users."""
    dataset = load_dataset(Path(bundle.manifest["dataset"]["path"]))
    held = held_out(bundle, Histories.from_ratings(dataset.ratings, dataset.num_users), targets_before)
    keep = np.isin(held.users, users) if users is not None else np.ones(len(held.users), bool)
    if ranker is not None:   # rankings precomputed by the bundle's own ranker do not hold for another
        bundle = dataclasses.replace(bundle, ranker=ranker, precomputed=None)
    slot_pool = int(bundle.manifest["options"].get("slot_pool", SLOT_POOL))
    served = Served(bundle, QualityConfig(bundles=bundle.path, slot_pool=slot_pool))
    lists = [served.list(int(user), k, shares) for user in held.users[keep]]
    positions = position_in_lists(lists, held.targets[keep])
    out = {**list_metrics(positions, [k]), "users": int(keep.sum())}
    if gains:
        out["gains"] = ndcg_per_list(positions, k)
    return out


def served_quality(config: QualityConfig, say: Callable[[str], None] = print, progress=None) -> dict:
    """The report as a dict (see the module's docstring)."""
    bundle = load_bundle(config.bundles)
    data_dir = config.data_dir or Path(bundle.manifest["dataset"]["path"])
    dataset = load_dataset(data_dir)
    if dataset.name != bundle.manifest["dataset"]["name"] or dataset.num_items != bundle.num_items:
        raise ConfigError(f"{data_dir} is not the dataset bundle {bundle.version} was built from")
    held = held_out(bundle, Histories.from_ratings(dataset.ratings, dataset.num_users), config.targets_before)
    if not len(held.users):
        raise ConfigError(f"no user of {data_dir} has a held-out item under the bundle's split")
    kmax = max(config.k)
    served = Served(bundle, config)
    peers = {}
    if "als" in config.peers:
        from movierec.models.peers import ALSPeer

        started = time.perf_counter()
        peers["ALS (implicit)"] = ALSPeer(bundle.histories.sequences, bundle.num_items, bundle.popular)
        say(f"ALS peer (implicit {peers['ALS (implicit)'].version}) trained in {time.perf_counter() - started:.1f}s")
    names = [f"{name} channel" for name in bundle.recaller.names]
    lists: dict[str, list] = {"served": [], "personalized slot": [], **{n: [] for n in names}, "popularity": [],
                              **{n: [] for n in peers}}
    served_at = {k: [] for k in config.k}
    advance = progress(len(held.users), "users") if progress else None
    started = time.perf_counter()
    for user in held.users:
        context = bundle.context(int(user))
        for k in config.k:
            served_at[k].append(served.list(int(user), k))
        lists["personalized slot"].append(served.list(int(user), kmax, {"personalized": 1.0}))
        for name, channel in zip(names, bundle.recaller.channels):
            found = channel.retrieve(context, kmax, context.allowed)
            lists[name].append(found.items[:kmax] if found is not None else np.zeros(0, np.int64))
        allowed = context.allowed.array
        lists["popularity"].append(bundle.popular[allowed[bundle.popular]][:kmax])
        for name, peer in peers.items():
            lists[name].append(peer.recommend(context.user, kmax, allowed))
        if advance:
            advance(1)
    seconds = time.perf_counter() - started
    lists["served"] = served_at[config.k[0]]

    genres = np.zeros((bundle.num_items + 1, len(bundle.encoder.genres)), dtype=bool)
    genres[bundle.items.item.to_numpy()] = bundle.encoder.genre_matrix(bundle.items.genres)
    segments = {"all users": np.ones(len(held.users), dtype=bool)}
    for label, low, high in SEGMENTS:
        mask = (held.history >= low) & (held.history <= (high if high is not None else np.inf))
        if mask.any():
            segments[label] = mask
    metrics = {}
    for name, user_lists in lists.items():
        if name == "served":  # each cut-off from the list served with n = K
            positions = {k: position_in_lists(served_at[k], held.targets) for k in config.k}
            metric = lambda mask: {key: value for k in config.k
                                   for key, value in list_metrics(positions[k][mask], [k]).items()}
        else:
            position = position_in_lists(user_lists, held.targets)
            metric = lambda mask, position=position: list_metrics(position[mask], config.k)
        metrics[name] = {label: {**metric(mask), "users": int(mask.sum())} for label, mask in segments.items()}
    first = config.k[0]
    return {
        "bundle": bundle.version,
        "dataset": {"name": dataset.name, "path": str(data_dir), "ratings_file": dataset.manifest["source_files"]["ratings"]},
        "split": {**bundle.manifest.get("split", {}), "targets_before": config.targets_before},
        "ranker": bundle.manifest["rank"]["name"],
        "channels": list(bundle.recaller.names),
        "quotas": dict(served.pipeline.shares) if config.target is None else "the server's",
        "slot_pool": config.slot_pool, "slot_order": config.slot_order, "list_order": config.list_order,
        "served_from": config.target or "in process",
        "k": list(config.k),
        "users": int(len(held.users)),
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "metrics": metrics,
        "coverage": {name: float(len(np.unique(np.concatenate(user_lists))) / bundle.num_items)
                     for name, user_lists in lists.items()},
        "genre_diversity": {name: genre_diversity(user_lists, genres) for name, user_lists in lists.items()},
        "peers": {name: {"library": "implicit", "version": peer.version} for name, peer in peers.items()},
        "cutoff_for_coverage": first,
    }


def write_report(report: dict, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path:
        write_json(json_path, report)
    if plot_path:
        plot(report, plot_path)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["k"][0]
    names = list(report["metrics"])
    segments = [s for s in report["metrics"]["served"] if s != "all users"]
    fig, (overall, by_segment) = plt.subplots(1, 2, figsize=(13, 4.6))
    x = np.arange(len(names))
    for offset, metric, color in ((-0.2, f"HR@{k}", "tab:blue"), (0.2, f"NDCG@{k}", "tab:orange")):
        overall.bar(x + offset, [report["metrics"][n]["all users"][metric] for n in names], 0.4, label=metric,
                    color=color)
    overall.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    overall.set_title(f"all {report['users']:,} users")
    overall.legend()
    shown = [n for n in names if n in ("served", "personalized slot", "popularity") or n.startswith("sasrec")
             or n.startswith("ALS")]
    width = 0.8 / max(len(shown), 1)
    xs = np.arange(len(segments))
    for j, name in enumerate(shown):
        by_segment.bar(xs + j * width - 0.4 + width / 2,
                       [report["metrics"][name].get(s, {}).get(f"NDCG@{k}", 0.0) for s in segments], width, label=name)
    by_segment.set_xticks(xs, [f"{s}\n({report['metrics']['served'][s]['users']:,})" for s in segments], fontsize=8)
    by_segment.set_title(f"NDCG@{k} by segment (users)")
    by_segment.legend(fontsize=7)
    split = report["split"]
    how = (f"last {split['hold_out_last']} held out" if split.get("hold_out_last") else
           f"held out after {split.get('hold_out_after')}")
    fig.suptitle(f"served quality, {report['dataset']['name']}, {how}, bundle {report['bundle']} "
                 f"(ranker {report['ranker']}, slots {report['slot_order']}, pool {report['slot_pool']})", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
