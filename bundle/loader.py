"""Loading a bundle version for serving: verify every file, then let each component the
manifest lists load itself from its own files. Nothing here imports Paddle."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.dataset.features import FeatureEncoder
from movierec.dataset.sequences import Histories, Sequences
from movierec.dataset.store import ITEM_COLUMNS, USER_COLUMNS, Catalogue, read_table
from movierec.errors import echo
from movierec.files import load_npy, load_npz, read_manifest, verify_files
from movierec.rank.precomputed import PrecomputedRankings
from movierec.rank.ranker import Ranker
from movierec.rank.rankers import RANKERS
from movierec.recall.channels import CHANNELS
from movierec.recall.component import ComponentFiles
from movierec.recall.context import NO_ITEMS, ItemMask, RequestContext
from movierec.recall.recaller import Recaller

from .layout import CURRENT, BundleError, current_version

BUNDLE_FORMAT = 4
CONTENT_FILE = "content.npz"  # a content run's encoder and map, when the bundle was built with one
REMEDY = "rebuild it with `movierec build`"


@dataclass
class Bundle(Catalogue):
    """A verified, loaded bundle: the recaller, the ranker and the lists the blender needs."""

    path: Path
    manifest: dict
    items: pd.DataFrame
    users: pd.DataFrame
    encoder: FeatureEncoder
    user_features: np.ndarray    # (num_users + 1, 4) encoded side features of the known users
    histories: Histories
    recaller: Recaller
    ranker: Ranker
    popular: np.ndarray
    new: np.ndarray
    loaded_at: float
    precomputed: PrecomputedRankings | None = None
    content: object | None = None   # models.content.ContentRun: encodes movies that arrive while serving

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def user_id(self, raw_id: int) -> int:
        return int(self.user_ids([raw_id])[0])

    def context(self, user: int, user_features: np.ndarray | None = None, recent: np.ndarray = NO_ITEMS,
                exclude: np.ndarray = NO_ITEMS, filters: ItemMask | None = None,
                num_items: int | None = None, recent_ratings: np.ndarray | None = None) -> RequestContext:
        """The request context of contiguous user `user` (0 = unknown); a known user's side
        features are the stored ones unless given. `num_items`: the catalogue's size when movies
        joined it while serving (default: the bundle's)."""
        features = self.user_features[user] if user_features is None else user_features
        return RequestContext.build(num_items or self.num_items, self.histories, user, features, recent, exclude,
                                    filters, recent_ratings)


def verify(path: Path) -> dict:
    manifest = read_manifest(path, "bundle_format", BUNDLE_FORMAT, BundleError, "bundle", REMEDY)
    if manifest.get("version") != path.name:
        raise BundleError(f"{path.name}: its manifest is of version {echo(manifest.get('version'))}, "
                          "not the directory's name")
    verify_files(path, manifest.get("checksums", {}), BundleError, REMEDY, exact=True)
    return manifest


def resolve(path: str | Path) -> Path:
    """A bundle directory, or the `current` one of a bundle root."""
    path = Path(path)
    if (path / CURRENT).exists() or (path / CURRENT).is_symlink():
        resolved = current_version(path)
        if resolved is None or not resolved.is_dir():
            raise BundleError(f"{path}: `current` points to a missing bundle")
        path = resolved
    if not path.is_dir():
        raise BundleError(f"bundle not found: {path}")
    return path


def load_bundle(path: str | Path, with_rankings: bool = True) -> Bundle:
    """Load a bundle directory, or the `current` one of a bundle root; verifies every file."""
    path = resolve(path)
    manifest = verify(path)
    try:
        return _open(path, manifest, with_rankings)
    except BundleError:
        raise
    except Exception as exc:  # a file that passed its checksum but is unusable is still refused
        raise BundleError(f"{path}: cannot load bundle ({type(exc).__name__}: {exc})") from exc


def _open(path: Path, manifest: dict, with_rankings: bool) -> Bundle:
    histories = load_npz(path / "histories.npz")
    users = read_table(path / "users.parquet", USER_COLUMNS, BundleError, REMEDY)
    fragments = manifest["recall"]["channels"]
    channels = [CHANNELS.get(f["name"]).load(ComponentFiles(path, f"recall.{f['name']}"), f) for f in fragments]
    rank = manifest["rank"]
    ranker = RANKERS.get(rank["name"]).load(ComponentFiles(path, f"rank.{rank['name']}"), rank)
    recaller = Recaller(channels, {f["name"]: f["quota"] for f in fragments})
    return Bundle(
        path=path,
        manifest=manifest,
        items=read_table(path / "items.parquet", ITEM_COLUMNS, BundleError, REMEDY),
        users=users,
        encoder=FeatureEncoder.from_dict(json.loads((path / "features.json").read_text())),
        user_features=load_npy(path / "user_features.npy"),
        histories=Histories(Sequences(histories["indptr"], histories["items"]), histories["ratings"]),
        recaller=recaller,
        ranker=ranker,
        popular=load_npy(path / "popular.npy"),
        new=load_npy(path / "new.npy"),
        loaded_at=time.time(),
        precomputed=_load_rankings(path, manifest, len(users), recaller.names) if with_rankings else None,
        content=_load_content(path),
    )


def _load_content(path: Path):
    if not (path / CONTENT_FILE).is_file():
        return None
    from movierec.models.content import ContentRun

    return ContentRun.from_arrays(load_npz(path / CONTENT_FILE))


def _load_rankings(path: Path, manifest: dict, num_users: int, channels: tuple):
    stored = manifest.get("rankings")
    if stored and stored.get("store") == "redis":
        from movierec.rank.ranking_stores import RankingStoreError, RedisRankings

        try:
            rankings = RedisRankings.open(stored)
        except RankingStoreError as exc:
            raise BundleError(f"{path.name}: {exc}") from None
    elif (path / "rankings.npz").is_file():
        rankings = PrecomputedRankings.load(path / "rankings.npz")
    else:
        return None
    if rankings.num_users != num_users:
        raise BundleError(f"{path}: its rankings cover {rankings.num_users} users, the bundle has {num_users}")
    if rankings.channels != channels:
        raise BundleError(f"{path}: its rankings are for channels {rankings.channels}, the bundle has {channels}")
    return rankings
