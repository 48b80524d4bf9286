"""Bundles: everything the online server needs, built offline into one versioned directory.

    BUNDLES/
      current -> v20261124-131500-1a2b      (a symlink, switched atomically)
      v20261124-131500-1a2b/
        manifest.json        versions, counts, dims, index types, device, sources, sha256 of every file
        items.parquet users.parquet user_features.npy
        seen.npz             each user's history (CSR) and its ratings
        sasrec.model.npz sasrec.config.json sasrec_users.npy sasrec_items.faiss
        ncf_scorer.npz ncf_users.npy ncf_items.faiss
        posters.npy has_poster.npy poster_items.faiss   (when the NCF run had posters)
        item2item.npz popular.npy new.npy
        rankings.npz         every user's recall + rank result for a request without context
                             (when built with precompute_rankings, the default)

A bundle is written to `BUNDLES/.tmp-<version>` and renamed into place; only then does
`current` move. A build that dies leaves `current` untouched, and its temp directory is
removed by the next build. Loading verifies every checksum and refuses a bundle that differs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from movierec.dataset.sequences import Sequences, chronological
from movierec.dataset.store import Catalogue, Dataset, load_dataset, sha256_file
from movierec.device import faiss_gpu_count, paddle_device
from movierec.errors import MovieRecError
from movierec.rank.ncf import NCFScorer, load_ncf, read_run_config, run_features
from movierec.rank.ranking import PrecomputedRankings, precompute_rankings
from movierec.recall.channels import item2item_neighbours
from movierec.recall.index import IndexSpec, ItemIndex, search_threads
from movierec.recall.recaller import DEFAULT_QUOTAS, Recaller
from movierec.recall.sasrec import SASRecConfig, SASRecInference, load_sasrec
from movierec.training import RunDir, load_tensors, save_tensors

BUNDLE_FORMAT = 1
CURRENT = "current"
TMP_PREFIX = ".tmp-"
SECONDS_PER_DAY = 86_400


class BundleError(MovieRecError):
    """A bundle that cannot be built or loaded."""


@dataclass
class BuildOptions:
    data_dir: Path
    sasrec_run: Path
    ncf_run: Path
    bundles: Path
    index: str = "flat"
    keep: int = 3
    hold_out_last: bool = False         # build from histories without each user's last item (for evaluation)
    popular_half_life_days: float = 0.0  # 0 = plain counts
    neighbours: int = 50
    poster_dim: int = 64                # poster channel: PCA dimension of the poster vectors
    precompute_rankings: bool = True    # store each known user's ranked candidates (rank.ranking)


@dataclass
class BuildReport:
    version: str
    path: Path
    timings: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


def _histories(dataset: Dataset, hold_out_last: bool) -> tuple[Sequences, np.ndarray, np.ndarray]:
    """Each user's chronological items with their ratings and timestamps."""
    ratings = dataset.ratings
    order = np.lexsort((ratings.row.to_numpy(), ratings.timestamp.to_numpy(), ratings.user.to_numpy()))
    sequences = chronological(ratings, dataset.num_users)
    values = ratings.rating.to_numpy()[order].astype(np.int8)
    stamps = ratings.timestamp.to_numpy()[order]
    if hold_out_last:
        lengths = sequences.lengths()
        keep = np.ones(len(sequences.items), dtype=bool)
        keep[sequences.indptr[1:][lengths > 0] - 1] = False
        new_lengths = np.maximum(lengths - 1, 0)
        sequences = Sequences(np.concatenate([[0], np.cumsum(new_lengths)]), sequences.items[keep])
        values, stamps = values[keep], stamps[keep]
    return sequences, values, stamps


def popular_items(items: np.ndarray, stamps: np.ndarray, num_items: int, half_life_days: float) -> np.ndarray:
    """Item ids by interaction count, optionally decayed by age relative to the newest interaction."""
    weights = np.ones(len(items))
    if half_life_days > 0 and len(stamps):
        age_days = (stamps.max() - stamps) / SECONDS_PER_DAY
        weights = 0.5 ** (age_days / half_life_days)
    counts = np.bincount(items, weights=weights, minlength=num_items + 1)
    counts[0] = -1
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] > 0].astype(np.int64)


def new_items(dataset: Dataset, items: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Item ids by release year, newest first, then by first rating time, latest first."""
    first_seen = np.full(dataset.num_items + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, items, stamps)
    first_seen[first_seen == np.iinfo(np.int64).max] = 0
    year = np.zeros(dataset.num_items + 1, dtype=np.int64)
    year[dataset.items.item.to_numpy()] = dataset.items.year.to_numpy()
    candidates = np.arange(1, dataset.num_items + 1)
    order = np.lexsort((-first_seen[candidates], -year[candidates]))
    return candidates[order].astype(np.int64)


def reduce_posters(posters: np.ndarray, has_poster: np.ndarray, dim: int) -> np.ndarray:
    """PCA of the (centred) poster vectors to `dim` dimensions, rows re-normalised, for the
    poster recall channel: a 1280-d inner product per catalogue item is most of a request's
    time, and the leading components carry the visual similarity the channel uses."""
    present = has_poster > 0
    out = np.zeros((len(posters), min(dim, posters.shape[1])), dtype=np.float32)
    if present.sum() <= dim:
        out[present] = posters[present][:, :out.shape[1]]
        return out
    rows = posters[present] - posters[present].mean(axis=0)
    _, _, components = np.linalg.svd(rows, full_matrices=False)
    reduced = rows @ components[:dim].T
    out[present] = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-8)
    return out


def _version() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _clean_leftovers(root: Path) -> list[str]:
    removed = []
    for path in root.glob(TMP_PREFIX + "*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def _switch_current(root: Path, version: str) -> None:
    link = root / CURRENT
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:6]}"
    os.symlink(version, tmp)
    os.replace(tmp, link)


def _prune(root: Path, keep: int) -> list[str]:
    current = current_version(root)
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v") and not p.is_symlink())
    removed = []
    for name in versions[:-keep] if keep > 0 else []:
        if current is None or name != current.name:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def current_version(root: str | Path) -> Path | None:
    link = Path(root) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    return (Path(root) / os.readlink(link)) if link.is_symlink() else link


def build_bundle(options: BuildOptions, progress: Callable | None = None,
                 fail_after: str | None = None) -> BuildReport:
    """Export models and data, build the indexes, write the bundle atomically and switch `current`.

    `progress(total, description)`, when given, returns an `advance(n)` callable for a bar.

    `fail_after` names a stage ('export', 'index', 'write') after which to raise: tests use it
    to check that a build failing midway leaves the previous bundle in place."""
    if options.keep < 1:
        raise BundleError("--keep must be at least 1")
    spec = IndexSpec.parse(options.index)
    root = Path(options.bundles)
    root.mkdir(parents=True, exist_ok=True)
    leftovers = _clean_leftovers(root)
    version = _version()
    tmp = root / f"{TMP_PREFIX}{version}"
    tmp.mkdir()
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        dataset = load_dataset(options.data_dir)
        histories, ratings, stamps = _histories(dataset, options.hold_out_last)
        sasrec = load_sasrec(options.sasrec_run, dataset.num_items)
        ncf_config = read_run_config(options.ncf_run)
        features = run_features(dataset, options.ncf_run, ncf_config)
        ncf = load_ncf(options.ncf_run, features)

        dataset.items[["item", "raw_id", "title", "year", "genres"]].to_parquet(tmp / "items.parquet", index=False)
        dataset.users.to_parquet(tmp / "users.parquet", index=False)
        np.save(tmp / "user_features.npy", features.user_features)
        np.savez(tmp / "seen.npz", indptr=histories.indptr, items=histories.items, ratings=ratings)
        user_sequences = [histories.of(u) for u in range(dataset.num_users + 1)]
        sasrec_users = sasrec.user_vectors(user_sequences)
        sasrec_users[0] = 0.0
        np.save(tmp / "sasrec_users.npy", sasrec_users)
        save_tensors(tmp / "sasrec.model.npz", sasrec.state_dict())
        shutil.copyfile(RunDir(options.sasrec_run).config, tmp / "sasrec.config.json")
        scorer = ncf.export_scorer()
        scorer.save(tmp / "ncf_scorer.npz")
        ncf_users, ncf_items = scorer.recall_vectors()
        np.save(tmp / "ncf_users.npy", ncf_users)
        has_posters = bool(features.has_poster.any())
        if has_posters:
            posters = reduce_posters(features.posters, features.has_poster, options.poster_dim)
            np.save(tmp / "posters.npy", posters)
            np.save(tmp / "has_poster.npy", features.has_poster)
        neighbour_ids, neighbour_scores = item2item_neighbours(histories.indptr, histories.items,
                                                               dataset.num_items, options.neighbours)
        np.savez(tmp / "item2item.npz", ids=neighbour_ids, scores=neighbour_scores)
        np.save(tmp / "popular.npy", popular_items(histories.items, stamps, dataset.num_items,
                                                   options.popular_half_life_days))
        np.save(tmp / "new.npy", new_items(dataset, histories.items, stamps))
        timings["export_seconds"] = time.perf_counter() - started
        if fail_after == "export":
            raise BundleError("simulated failure after export")

        started = time.perf_counter()
        item_ids = np.arange(1, dataset.num_items + 1)
        sasrec_index = ItemIndex.build(sasrec.item_vectors()[1:], item_ids, spec)
        sasrec_index.save(tmp / "sasrec_items.faiss")
        ItemIndex.build(ncf_items[1:], item_ids, spec).save(tmp / "ncf_items.faiss")
        if has_posters:
            with_poster = np.flatnonzero(features.has_poster)
            ItemIndex.build(posters[with_poster], with_poster, spec).save(tmp / "poster_items.faiss")
        timings["index_seconds"] = time.perf_counter() - started
        if fail_after == "index":
            raise BundleError("simulated failure after indexing")

        if options.precompute_rankings:
            started = time.perf_counter()
            staged = load_bundle(tmp, verify_checksums=False, with_rankings=False)
            advance = progress(dataset.num_users, "ranking every user") if progress else None
            with threadpool_limits(1), search_threads(1):  # single queries, as the server runs them
                rankings = precompute_rankings(staged.recaller, staged.scorer, staged.user_features,
                                               dataset.num_users, advance)
            rankings.save(tmp / "rankings.npz")
            timings["rankings_seconds"] = time.perf_counter() - started

        manifest = {
            "bundle_format": BUNDLE_FORMAT,
            "version": version,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dataset": {"name": dataset.name, "path": str(options.data_dir),
                        "ratings_file": dataset.manifest["source_files"]["ratings"]},
            "counts": {"users": dataset.num_users, "items": dataset.num_items,
                       "interactions": int(len(histories.items)),
                       "items_with_poster": int(features.has_poster.sum())},
            "dims": {"sasrec": int(sasrec.config.hidden), "ncf_gmf": int(ncf_items.shape[1]),
                     "poster": int(features.posters.shape[1]) if has_posters else 0,
                     "poster_channel": int(posters.shape[1]) if has_posters else 0},
            "index": {"spec": str(spec), "device": sasrec_index.device},
            "device": {"paddle": paddle_device(), "faiss_gpus": faiss_gpu_count()},
            "sources": {"sasrec_run": str(options.sasrec_run), "ncf_run": str(options.ncf_run),
                        "sasrec_weights_sha256": sha256_file(RunDir(options.sasrec_run).best_model),
                        "ncf_weights_sha256": sha256_file(RunDir(options.ncf_run).best_model)},
            "ncf": {"side_features": ncf_config.side_features, "posters": ncf_config.posters},
            "hold_out_last": options.hold_out_last,
            "popular_half_life_days": options.popular_half_life_days,
            "precomputed_rankings": options.precompute_rankings,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        manifest["checksums"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if fail_after == "write":
            raise BundleError("simulated failure before the rename")
        os.rename(tmp, root / version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _switch_current(root, version)
    pruned = _prune(root, options.keep)
    return BuildReport(version, root / version, timings,
                       {**manifest, "pruned": pruned, "cleaned_leftovers": leftovers})


@dataclass
class Bundle(Catalogue):
    """A verified, loaded bundle: the recaller, the NCF scorer and the lists the blender needs."""

    path: Path
    manifest: dict
    items: pd.DataFrame
    users: pd.DataFrame
    user_features: np.ndarray
    recaller: Recaller
    scorer: NCFScorer
    popular: np.ndarray
    new: np.ndarray
    loaded_at: float
    precomputed: PrecomputedRankings | None = None

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def user_id(self, raw_id: int) -> int:
        return int(self.user_ids([raw_id])[0])


def verify(path: Path) -> dict:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a bundle (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if manifest.get("bundle_format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('bundle_format')!r}, this movierec "
                          f"reads {BUNDLE_FORMAT}; rebuild it with `movierec build`")
    checksums = manifest.get("checksums", {})
    for name, expected in checksums.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path}: {name} is missing")
        if sha256_file(file) != expected:
            raise BundleError(f"{path}: {name} does not match its checksum")
    extra = sorted(p.name for p in path.iterdir() if p.name not in checksums and p.name != "manifest.json")
    if extra:
        raise BundleError(f"{path}: files not in the manifest: {', '.join(extra)}")
    return manifest


def load_bundle(path: str | Path, verify_checksums: bool = True, with_rankings: bool = True) -> Bundle:
    """Load a bundle directory, or the `current` one of a bundle root; verifies every file.

    The builder loads its own staging directory (no manifest checksums yet, no rankings) to
    compute the rankings with exactly the serving code."""
    path = Path(path)
    if (path / CURRENT).exists() or (path / CURRENT).is_symlink():
        resolved = current_version(path)
        if resolved is None or not resolved.is_dir():
            raise BundleError(f"{path}: `current` points to a missing bundle")
        path = resolved
    if not path.is_dir():
        raise BundleError(f"bundle not found: {path}")
    manifest = verify(path) if verify_checksums else {"version": path.name}
    try:
        seen = np.load(path / "seen.npz", allow_pickle=False)
        history = Sequences(seen["indptr"], seen["items"])
        config = SASRecConfig.from_saved(json.loads((path / "sasrec.config.json").read_text()))
        items = pd.read_parquet(path / "items.parquet")
        users = pd.read_parquet(path / "users.parquet")
        sasrec = SASRecInference(load_tensors(path / "sasrec.model.npz"), config)
        neighbours = np.load(path / "item2item.npz", allow_pickle=False)
        has_posters = (path / "poster_items.faiss").is_file()
        recaller = Recaller(
            seen=history,
            seen_ratings=seen["ratings"],
            sasrec_index=ItemIndex.load(path / "sasrec_items.faiss"),
            sasrec_users=np.load(path / "sasrec_users.npy", allow_pickle=False),
            sasrec=sasrec,
            ncf_index=ItemIndex.load(path / "ncf_items.faiss"),
            ncf_users=np.load(path / "ncf_users.npy", allow_pickle=False),
            poster_index=ItemIndex.load(path / "poster_items.faiss") if has_posters else None,
            posters=np.load(path / "posters.npy", allow_pickle=False) if has_posters else np.zeros((len(items) + 1, 1), np.float32),
            has_poster=np.load(path / "has_poster.npy", allow_pickle=False) if has_posters else np.zeros(len(items) + 1, np.float32),
            neighbour_ids=neighbours["ids"],
            neighbour_scores=neighbours["scores"],
            quotas=dict(DEFAULT_QUOTAS),
        )
        return Bundle(
            path=path,
            manifest=manifest,
            items=items,
            users=users,
            user_features=np.load(path / "user_features.npy", allow_pickle=False),
            recaller=recaller,
            scorer=NCFScorer.load(path / "ncf_scorer.npz"),
            popular=np.load(path / "popular.npy", allow_pickle=False),
            new=np.load(path / "new.npy", allow_pickle=False),
            loaded_at=time.time(),
            precomputed=_load_rankings(path, len(users)) if with_rankings else None,
        )
    except BundleError:
        raise
    except Exception as exc:  # a file that passed its checksum but is unusable is still refused
        raise BundleError(f"{path}: cannot load bundle ({type(exc).__name__}: {exc})") from exc



def _load_rankings(path: Path, num_users: int) -> PrecomputedRankings | None:
    if not (path / "rankings.npz").is_file():
        return None
    rankings = PrecomputedRankings.load(path / "rankings.npz")
    if rankings.num_users != num_users:
        raise BundleError(f"{path}: rankings.npz covers {rankings.num_users} users, the bundle has {num_users}")
    return rankings
