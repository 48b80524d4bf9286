"""`movierec build`, the index-rebuild command: trained runs and data in, a new bundle version
out, and `current` switched to it atomically.

The builder loops over the configured components: each recall channel and the ranker is
built by its own module (`recall.channels`, `rank.rankers`), writes its own files and returns
what the manifest records of it. Around them the builder writes what every bundle holds:

    manifest.json        format, version, sources, counts, device, components, sha256 of every file
    items.parquet users.parquet     the catalogue and its id maps
    features.json        the side-feature encoder (dataset.features)
    user_features.npy    every known user's encoded side features
    histories.npz        each user's history (CSR) and its ratings
    popular.npy new.npy  the blender's lists
    content.npz          with a content run: its encoder and map into the SASRec space
    recall.<channel>.*   each channel's files, rank.<ranker>.*  the ranker's
    rankings.npz         every known user's recall + rank result for a request without context

Everything is written to `BUNDLES/.tmp-<version>` and renamed into place; only then does
`current` move. A build that dies leaves `current` untouched, and its temp directory is
removed by the next build.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from movierec.blend.lists import SLOT_POOL, new_items, popular_items
from movierec.blend.quotas import MAX_N
from movierec.bundle.cluster import rank_users
from movierec.dataset.store import load_dataset
from movierec.device import faiss_gpu_count, paddle_device
from movierec.errors import ConfigError, echo
from movierec.files import MANIFEST, load_npy, save_npy, save_npz, sha256_file, write_json
from movierec.options import option
from movierec.rank.precomputed import join, pool_size, precompute_rankings, ranked_blocks
from movierec.rank.rankers import RANKERS
from movierec.recall.channels import CHANNELS
from movierec.recall.component import BuildInputs, ComponentFiles
from movierec.recall.context import RequestContext
from movierec.recall.index import IndexConfig, check_index, search_threads
from movierec.recall.recaller import DEFAULT_QUOTAS, Recaller
from movierec.workdir import BUNDLES, DEFAULT_DATA, run_dir

from .heldout import bundle_histories
from .layout import TMP_PREFIX, BundleError, clean_leftovers, new_version, prune, switch_current
from .loader import BUNDLE_FORMAT, CONTENT_FILE

DEFAULT_CHANNELS = tuple(f"{name}:{quota}" for name, quota in DEFAULT_QUOTAS.items())
FAIL_STAGES = ("export", "rankings", "write")


@dataclass
class BuildOptions:
    data_dir: Path = option(DEFAULT_DATA, "Normalised dataset (from `movierec data`).", flag="--data")
    sasrec_run: Path | None = option(None, "SASRec run directory (default: movierec-work/runs/sasrec-<data>-ce).")
    ncf_run: Path | None = option(None, "NCF run directory (default: movierec-work/runs/ncf-<data>).")
    bundles: Path = option(BUNDLES, "Bundle root: versions and the `current` pointer live here.")
    posters: Path | None = option(None, "Poster vectors (.npz) for the poster channel [default: the ones the NCF "
                                  "run was trained with, if any].")
    content_run: Path | None = option(None, "A content run (`movierec train content`): the content channel's encoder, "
                                      "and SASRec vectors mapped from content for the movies the SASRec run never "
                                      "trained on.")
    channels: tuple = option(DEFAULT_CHANNELS, "A recall channel as NAME:QUOTA[,param=value,...], repeatable, in "
                             "merge order (channels: sasrec, sasrec2 and sasrec3 with run=DIR, ncf, poster, item2item, content, two_tower).", flag="--channel", repeat=True)
    ranker: str = option("recall,channel=sasrec", "The ranker that orders the merged candidates (and the popular and new slots' "
                         "pools), as NAME[,param=value,...]: recall,channel=NAME (a channel's own order), ncf (the "
                         "NCF run alone), or a trained ranker run, lgbm|ncf-list|din,run=DIR.")
    ranker_runs: tuple = option((), "A trained ranker run (`movierec train ranker`), repeatable: the one that beats "
                                "the recall order by the most on its validation users is served, else --ranker.",
                                flag="--ranker-run", repeat=True)
    ranker_margin: float = option(1.0, "With --ranker-run: a run is served only if its served lists beat the bundle's "
                                  "own on its validating users by at least this many standard errors of the paired "
                                  "difference (0: any gain).")
    index: str = option("Flat", "FAISS index_factory string of every channel's index: 'Flat' (exact), "
                        "'IVF256,Flat', 'HNSW32', ...")
    index_search: str = option("", "Search parameters of the index: 'nprobe=16' (IVF), 'efSearch=64' (HNSW); "
                               "with Milvus 'nprobe=16', 'ef=64'.")
    index_store: str = option("", "An index service for every channel's vectors instead of FAISS files in the "
                              "bundle: milvus://host:port, or a milvus-lite file (--index then names a Milvus "
                              "index type: FLAT, HNSW,M=16,efConstruction=200, IVF_FLAT,nlist=128).")
    keep: int = option(3, "Bundle versions to keep (the current one always stays).")
    hold_out_last: int = option(0, "Leave each user's last N items out of the bundle, to evaluate on them "
                                "(1: the test item, 2: the validation item, of the runs' leave-last-out split).")
    hold_out_after: str = option("", "Build from the ratings before this date only (YYYY-MM-DD, UTC), to evaluate "
                                 "on what came after; the runs must have been trained with the same cut.")
    popular_half_life_days: float = option(0.0, "Time-decay the popular list with this half-life (0 = plain counts).")
    slot_pool: int = option(SLOT_POOL, "With the rankings: each user's order of this many of the most popular and "
                            "the newest items, for the popular and new slots (as `serve --slot-pool`).")
    rankings_store: str = option("", "Where the per-user rankings go: '' (rankings.npz in the bundle) or "
                                 "redis://host:port/db (one key per user, for more users than a server should "
                                 "hold in memory; the manifest keeps the URL without its password, the server "
                                 "may take another from MOVIEREC_RANKINGS_URL).")
    build_cluster: str = option("", "Compute the users' SASRec states and per-user rankings on a cluster, over shards of users: "
                                "dask:local:N (N worker processes here), dask:tcp://HOST:PORT, ray:local:N or "
                                "ray:HOST:PORT; '' (the default): in this process. The same bundle either way.")
    precompute_rankings: bool = option(True, "Rank every known user's candidates offline, so requests without "
                                       "context skip recall and rank (about 1 ms per user at build time, "
                                       "~5.3 KB per user in the bundle, ~6.3 KB in Redis).")

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.sasrec_run = Path(self.sasrec_run or run_dir("sasrec", self.data_dir, "ce"))
        self.ncf_run = Path(self.ncf_run or run_dir("ncf", self.data_dir))
        self.content_run = Path(self.content_run) if self.content_run else None
        self.bundles = Path(self.bundles)
        self.channels = tuple(self.channels)
        self.ranker_runs = tuple(Path(run) for run in self.ranker_runs)
        self.hold_out_last = int(self.hold_out_last)
        if self.build_cluster:
            from movierec.shards import parse_cluster

            parse_cluster(self.build_cluster)
        if self.keep < 1 or self.slot_pool < 1:
            raise ConfigError("--keep and --slot-pool must be at least 1")
        if not self.ranker_margin >= 0:
            raise ConfigError(f"--ranker-margin must be at least 0, not {self.ranker_margin}")
        if self.hold_out_last < 0 or (self.hold_out_last and self.hold_out_after):
            raise ConfigError("hold out the last items (--hold-out-last N >= 1) or everything after a time "
                              "(--hold-out-after DATE), not both")


@dataclass
class ComponentSpec:
    """A component as the command line names it: NAME[:QUOTA][,param=value,...]."""

    name: str
    quota: int
    params: dict

    @classmethod
    def parse(cls, text: str, registry, kind: str, quota: bool) -> "ComponentSpec":
        form = "NAME:QUOTA[,param=value,...] with a positive quota" if quota else "NAME[,param=value,...]"
        head, *rest = [part.strip() for part in text.split(",")]
        name, sep, count = head.partition(":")
        if not name or (quota and (not count.strip().isdigit() or int(count) <= 0)) or (not quota and sep):
            raise ConfigError(f"a {kind} is {form}, not {echo(text)}")
        if name not in registry:
            raise ConfigError(f"unknown {kind} {echo(name)}; known: {', '.join(registry.names())}")
        params = {}
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{kind} parameters are param=value, not {echo(item)} in {echo(text)}")
            params[key.strip()] = value.strip()
        return cls(name, int(count) if quota else 0, params)


@dataclass
class BuildReport:
    version: str
    path: Path
    timings: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


def _component_specs(options: BuildOptions) -> tuple[list[ComponentSpec], ComponentSpec]:
    specs = [ComponentSpec.parse(text, CHANNELS, "recall channel", quota=True) for text in options.channels]
    names = [spec.name for spec in specs]
    if not specs or len(set(names)) != len(names):
        raise ConfigError(f"give each recall channel once, at least one: {', '.join(names) or 'none'}")
    return specs, ComponentSpec.parse(options.ranker, RANKERS, "ranker", quota=False)


def _chosen_ranker(options: BuildOptions, spec: ComponentSpec) -> tuple[ComponentSpec, Path | None, dict]:
    """With --ranker-run: the run that won on validation (its ranker), else `spec`; and what
    the manifest records of the choice."""
    from movierec.rank.learned import choose_ranker, read_ranker_run

    if "run" in spec.params:
        run = Path(spec.params["run"])
        _check_ranker_split(options, run, read_ranker_run(run)[0].get("trained_on", {}).get("split", {}))
    if not options.ranker_runs:
        return spec, None, {}
    for run in options.ranker_runs:
        _check_ranker_split(options, run, read_ranker_run(run)[0].get("trained_on", {}).get("split", {}))
    best, scored = choose_ranker(list(options.ranker_runs), options.ranker_margin)
    choice = {"runs": scored, "margin": options.ranker_margin, "chosen": str(best) if best else
              f"{options.ranker} (no run beat the recall order by {options.ranker_margin:g} standard errors)"}
    if best is None:
        return spec, None, choice
    return ComponentSpec(read_ranker_run(best)[0]["ranker"], 0, {}), best, choice


def _check_ranker_split(options: BuildOptions, run: Path, split: dict) -> None:
    """A held-out bundle may not serve a ranker trained on its own targets."""
    last, after, before = int(split.get("hold_out_last", 0)), split.get("hold_out_after", ""), \
        split.get("targets_before", "")
    if not (options.hold_out_last or options.hold_out_after):
        return
    if last and not options.hold_out_after and options.hold_out_last < last:
        return
    if after and not options.hold_out_last and options.hold_out_after and before and options.hold_out_after >= before:
        return
    trained = f"the last {last} item(s) held out" if last else f"targets after {after}" + (
        f" and before {before}" if before else "")
    raise ConfigError(f"the ranker run {run} was trained on {trained}, which this bundle's held-out targets may "
                      "include; train it on an earlier split")


def _posters(options: BuildOptions) -> Path | None:
    """The poster vectors to use: the option's, or the copy an NCF run trained with."""
    from movierec.models.ncf.training import POSTERS_FILE

    if options.posters is not None:
        return options.posters
    trained_with = options.ncf_run / POSTERS_FILE
    return trained_with if trained_with.is_file() else None


def _check_runs_cut(options: BuildOptions) -> None:
    """A bundle that holds out everything after a time may not use models that saw it."""
    from movierec.dataset.store import cut_time
    from movierec.models.runs import trained_before

    if not options.hold_out_after:
        return
    for model, run in (("SASRec", options.sasrec_run), ("NCF", options.ncf_run)):
        cut = trained_before(run)
        if not cut or cut_time(cut) > cut_time(options.hold_out_after):
            trained = f"on the ratings before {cut}" if cut else "on all ratings"
            raise ConfigError(f"the {model} run {run} was trained {trained}, so it has seen what a bundle with "
                              f"--hold-out-after {options.hold_out_after} holds out; train it with that cut")


def _check_runs_dataset(options: BuildOptions, dataset) -> None:
    """Models index their tables by contiguous ids: a run trained on other users or items
    (a dataset written from a store that has grown since) would be read wrongly. SASRec has no
    user table (a user is their history), so only its items must match."""
    from movierec.models.runs import run_dataset

    signature = dataset.signature()
    for model, run, tables in (("SASRec", options.sasrec_run, ("items",)), ("NCF", options.ncf_run, ("users", "items"))):
        recorded = run_dataset(run)
        if recorded is not None and any(recorded[table] != signature[table] for table in tables):
            raise ConfigError(f"the {model} run {run} was trained on another catalogue ({recorded['users']['count']:,} "
                              f"users, {recorded['items']['count']:,} items; this dataset has {dataset.num_users:,} and "
                              f"{dataset.num_items:,}): train it on this dataset (`movierec build --train`)")


def _write_common(tmp: Path, inputs: BuildInputs, options: BuildOptions) -> np.ndarray:
    """The catalogue, encoder, histories and lists every bundle holds; returns the user features."""
    dataset, histories = inputs.dataset, inputs.histories
    dataset.items[["item", "raw_id", "title", "year", "genres"]].to_parquet(tmp / "items.parquet", index=False)
    dataset.users.to_parquet(tmp / "users.parquet", index=False)
    write_json(tmp / "features.json", inputs.encoder.to_dict())
    user_features = inputs.encoder.user_matrix(dataset.users, dataset.num_users)
    save_npy(tmp / "user_features.npy", user_features)
    save_npz(tmp / "histories.npz", {"indptr": histories.sequences.indptr, "items": histories.sequences.items,
                                     "ratings": histories.ratings})
    save_npy(tmp / "popular.npy", popular_items(histories.sequences.items, histories.stamps, dataset.num_items,
                                                options.popular_half_life_days))
    save_npy(tmp / "new.npy", new_items(dataset.items, histories.sequences.items, histories.stamps))
    if "content" in inputs.runs:  # for movies that arrive while the bundle is served
        from movierec.models.content import ContentRun

        save_npz(tmp / CONTENT_FILE, inputs.shared("content.run", lambda: ContentRun.load(inputs.run("content"))).arrays())
    return user_features


def _drop_rankings(fragment: dict) -> None:
    from movierec.rank.ranking_stores import RankingStoreError, RedisRankings

    try:
        RedisRankings.drop(fragment["url"], fragment["prefix"])
    except RankingStoreError:
        pass   # a store that is away keeps the keys; nothing else is lost


def _drop_indexes(fragments: list[dict]) -> None:
    from movierec.recall.index.milvus import MilvusError, drop_collection

    for fragment in fragments:
        config = IndexConfig.from_dict(fragment["index"]) if "index" in fragment else None
        if config is not None and config.backend == "milvus":
            try:
                drop_collection(config)
            except MilvusError:
                pass   # a service that is away keeps the collection; nothing else is lost


def _drop_outside(path: Path) -> None:
    """What a pruned version keeps outside its directory: rankings in Redis, Milvus collections."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return
    if (manifest.get("rankings") or {}).get("store") == "redis":
        _drop_rankings(manifest["rankings"])
    _drop_indexes(manifest.get("recall", {}).get("channels", []))


def build_bundle(options: BuildOptions, progress: Callable | None = None,
                 fail_after: str | None = None) -> BuildReport:
    """Build every component, write the bundle atomically and switch `current`.

    `progress(total, description)`, when given, returns an `advance(n)` callable for a bar.
    `fail_after` names a stage of FAIL_STAGES after which to raise: tests use it to check that
    a build failing midway leaves the previous bundle in place."""
    specs, ranker_spec = _component_specs(options)
    index_config = IndexConfig.parse(options.index, options.index_search, "milvus" if options.index_store else "faiss",
                                     options.index_store)
    check_index(index_config)
    root = options.bundles
    root.mkdir(parents=True, exist_ok=True)
    leftovers = clean_leftovers(root)
    version = new_version()
    tmp = root / f"{TMP_PREFIX}{version}"
    tmp.mkdir()
    timings: dict[str, float] = {}
    ranking_store, ranking_prefix = None, None
    try:
        started = time.perf_counter()
        dataset = load_dataset(options.data_dir).before(options.hold_out_after)
        _check_runs_cut(options)
        _check_runs_dataset(options, dataset)
        histories = bundle_histories(dataset, options.hold_out_last)
        ranker_spec, ranker_run, choice = _chosen_ranker(options, ranker_spec)
        runs = {"sasrec": options.sasrec_run, "ncf": options.ncf_run, **({"ranker": ranker_run} if ranker_run else {}),
                **({"content": options.content_run} if options.content_run else {})}
        inputs = BuildInputs(dataset, histories, dataset.encoder, index_config, runs=runs, posters=_posters(options),
                             channels=tuple(spec.name for spec in specs), cluster=options.build_cluster)
        user_features = _write_common(tmp, inputs, options)
        timings["data_seconds"] = time.perf_counter() - started

        channels, fragments, left_out = [], [], []
        for spec in specs:
            started = time.perf_counter()
            channel = CHANNELS.get(spec.name).build(replace(inputs, index=index_config.named(version, spec.name)),
                                                    spec.params)
            if channel is None:
                left_out.append(spec.name)
                continue
            files = ComponentFiles(tmp, f"recall.{spec.name}")
            fragments.append({"name": spec.name, "quota": spec.quota, **channel.export(files), "files": files.names})
            channels.append(channel)
            timings[f"recall.{spec.name}_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        ranker = RANKERS.get(ranker_spec.name).build(inputs, ranker_spec.params)
        files = ComponentFiles(tmp, f"rank.{ranker_spec.name}")
        rank_fragment = {"name": ranker_spec.name, **ranker.export(files), "files": files.names,
                         **({"choice": choice} if choice else {})}
        timings[f"rank.{ranker_spec.name}_seconds"] = time.perf_counter() - started
        if fail_after == "export":
            raise BundleError("simulated failure after export")

        if options.precompute_rankings:
            started = time.perf_counter()
            recaller = Recaller(channels, {f["name"]: f["quota"] for f in fragments})
            num_items, num_users = dataset.num_items, dataset.num_users
            contexts = (RequestContext.build(num_items, histories, user, user_features[user])
                        for user in range(1, num_users + 1))
            advance = progress(num_users, "ranking every user") if progress else None
            pools = {"popular": load_npy(tmp / "popular.npy")[:options.slot_pool],
                     "new": load_npy(tmp / "new.npy")[:options.slot_pool]}
            store = None
            if options.rankings_store:
                from movierec.rank.ranking_stores import RedisRankings, store_prefix

                ranking_prefix = store_prefix(version)   # removed again if the build fails from here on
                store = (options.rankings_store, ranking_prefix)
            if options.build_cluster:   # blocks; with a store, the digests of the blocks the workers wrote into it
                ranked = rank_users(options.build_cluster, tmp, fragments, rank_fragment, num_users, num_items,
                                    options.slot_pool, MAX_N, advance, say=lambda _: None, store=store)
                if store:
                    ranking_store = RedisRankings.finish(*store, recaller.names, ranked)
                else:
                    rankings = join(ranked, recaller.names, tuple(pools), pool_size(pools), MAX_N)
            else:
                with threadpool_limits(1), search_threads(1):  # single queries, as the server runs them
                    if store:
                        ranking_store = RedisRankings.write(*store, recaller.names, ranked_blocks(
                            recaller, ranker, contexts, pools, MAX_N, advance))
                    else:
                        rankings = precompute_rankings(recaller, ranker, contexts, pools, MAX_N, advance)
            if not store:
                rankings.save(tmp / "rankings.npz")
            timings["rankings_seconds"] = time.perf_counter() - started
        if fail_after == "rankings":
            raise BundleError("simulated failure after the rankings")

        manifest = {
            "bundle_format": BUNDLE_FORMAT,
            "version": version,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "dataset": {"name": dataset.name, "path": str(options.data_dir),
                        "ratings_file": dataset.manifest["source_files"]["ratings"],
                        "without_last": int(dataset.manifest.get("without_last", 0))},
            "counts": {"users": dataset.num_users, "items": dataset.num_items,
                       "interactions": int(len(histories.sequences.items))},
            "index": {**index_config.to_dict(), "device": next(
                (f["index"]["device"] for f in fragments if "index" in f), "cpu")},
            "device": {"paddle": paddle_device(), "faiss_gpus": faiss_gpu_count()},
            "recall": {"channels": fragments, "left_out": left_out},
            "rank": rank_fragment,
            "split": {"hold_out_last": options.hold_out_last, "hold_out_after": options.hold_out_after},
            # the event-store position the dataset holds, so that a server following the store
            # knows which events are newer; a held-out bundle leaves some out and records none
            **({"snapshot": dataset.manifest["store"]} if "store" in dataset.manifest and not
               (options.hold_out_last or options.hold_out_after) else {}),
            "popular_half_life_days": options.popular_half_life_days,
            "precomputed_rankings": options.precompute_rankings,
            **({"rankings": ranking_store} if ranking_store else {}),
            "options": {k: str(v) if isinstance(v, Path) else [str(p) for p in v] if k == "ranker_runs" else v
                        for k, v in asdict(options).items()},
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        manifest["checksums"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / MANIFEST, manifest)
        if fail_after == "write":
            raise BundleError("simulated failure before the rename")
        tmp.rename(root / version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if ranking_prefix:
            _drop_rankings({"url": options.rankings_store, "prefix": ranking_prefix})
        if index_config.backend == "milvus":
            _drop_indexes([{"index": index_config.named(version, spec.name).to_dict()} for spec in specs])
        raise
    switch_current(root, version)
    if index_config.backend == "milvus":
        from movierec.recall.index.milvus import point_alias

        for fragment in fragments:
            if "index" in fragment:
                point_alias(IndexConfig.from_dict(fragment["index"]), fragment["name"])
    pruned = prune(root, options.keep, on_remove=_drop_outside)
    return BuildReport(version, root / version, timings,
                       {**manifest, "pruned": pruned, "cleaned_leftovers": leftovers})

