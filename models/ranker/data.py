"""A learned ranker's training data: what recall hands the ranker, from a held-out bundle,
with labels its recall models never saw.

For every user with a held-out target (`bundle.heldout`), the bundle's own recall runs as a
request would (`Recaller.recall`); the merged candidates, about 300, make one list (with a head,
`train ranker --head K`, the first K in the recall order only, as the cascade serves; with
`--scores-head`, each scored by every channel, as `rank.ranker.score_head` serves them), plus a
sample of the popular and new slots' pools the ranker also orders, scored by each channel as a
request scores them (`Recaller.score_items`). The target is the one positive; every other
candidate is a hard negative.

The leakage guard (`check_no_leakage`): the models behind an example must not have seen its
label. A bundle with `--hold-out-last 2` holds each user's history without the runs'
validation and test items and targets the validation item, which the runs (trained on the
leave-last-out split, all but the last two items) never trained on; `--hold-out-last 1`
targets the test item (for a ranker served on a bundle of every rating). A time-cut bundle's
runs were trained before the cut (checked when it was built) and its targets come after it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movierec.bundle.heldout import bundle_histories, held_out, split_of
from movierec.bundle.loader import Bundle
from movierec.dataset.sequences import Histories
from movierec.dataset.store import load_dataset
from movierec.errors import ConfigError
from movierec.models.runs import trained_before, trained_without_last
from movierec.rank.features import RankFeatures
from movierec.rank.ranker import fill_scores, head_rows

from .config import SEQUENCE_ITEMS

def check_no_leakage(bundle: Bundle) -> None:
    """Refuse a bundle whose recall models have seen the labels it would give."""
    last, after = split_of(bundle.manifest)
    runs = {model: bundle.manifest["options"].get(f"{model}_run") for model in ("sasrec", "ncf")}
    runs.update({f"{channel['name']} channel's": channel["source"]["run"]   # a channel trained on a run of its own
                 for channel in bundle.manifest["recall"]["channels"] if channel.get("source", {}).get("run")})
    if after:
        for model, run in runs.items():
            cut = trained_before(Path(run)) if run else ""
            if not cut or cut > after:
                raise ConfigError(f"bundle {bundle.version}: its {model} run was not trained before {after}")
        return
    if not last:
        raise ConfigError(f"bundle {bundle.version} holds every rating, so its recall models saw every label; "
                          "train a ranker on a bundle built with --hold-out-last 2 or --hold-out-after DATE")
    dropped = int(bundle.manifest["dataset"].get("without_last", 0))
    for model, run in runs.items():
        if not run or trained_before(Path(run)):
            continue
        unseen = trained_without_last(Path(run)) + 2   # the run trained on all but each user's last `unseen`
        if dropped + last > unseen:
            raise ConfigError(f"bundle {bundle.version} targets each user's item {dropped + last} from the end, but its "
                              f"{model} run trained on all but the last {unseen}: it saw the label; hold out fewer "
                              "items, or train the run on a dataset written with `movierec data --without-last`")


@dataclass
class RankLists:
    """Every user's candidate list, as CSR rows of features."""

    users: np.ndarray       # (L,) contiguous user ids
    scored_as: np.ndarray   # (L,) the request context's user (0 for a user the bundle has no history of)
    indptr: np.ndarray      # (L + 1,)
    items: np.ndarray       # (R,) candidate item ids
    features: np.ndarray    # (R, F) float32
    labels: np.ndarray      # (R,) bool: the held-out target
    merged: np.ndarray      # (R,) bool: a recalled candidate (False: from a slot's pool)
    baseline: np.ndarray    # (R,) float32: the bundle's own ranker's logit (the recall order)
    user_codes: np.ndarray  # (L, 4) the users' side-feature codes
    sequences: np.ndarray   # (L, SEQUENCE_ITEMS) each request's most recent items, oldest first, 0-padded on the left

    def rows(self, lists: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(self.indptr[i], self.indptr[i + 1]) for i in lists]) if len(lists) \
            else np.zeros(0, np.int64)

    def subset(self, lists: np.ndarray) -> "RankLists":
        rows = self.rows(lists)
        sizes = self.indptr[lists + 1] - self.indptr[lists]
        return RankLists(self.users[lists], self.scored_as[lists], np.concatenate([[0], np.cumsum(sizes)]), self.items[rows],
                         self.features[rows], self.labels[rows], self.merged[rows], self.baseline[rows],
                         self.user_codes[lists], self.sequences[lists])

    @classmethod
    def joined(cls, parts: list["RankLists"]) -> "RankLists":
        """The lists of `parts`, one after another."""
        sizes = np.concatenate([np.diff(part.indptr) for part in parts])
        fields = ("users", "scored_as", "items", "features", "labels", "merged", "baseline", "user_codes", "sequences")
        joined = {key: np.concatenate([getattr(part, key) for part in parts]) for key in fields}
        return cls(indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), **joined)

    def with_positive(self) -> np.ndarray:
        """The lists whose target is among their candidates."""
        return np.flatnonzero(np.add.reduceat(self.labels, self.indptr[:-1]) > 0) if len(self.users) \
            else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.users)


def user_folds(users: np.ndarray, seed: int, folds: int) -> np.ndarray:
    """Each user's fold among `folds`, by a hash of (seed, user): the same for every model."""
    draws = np.array([zlib.crc32(f"{seed}:{u}".encode()) for u in users]) / 2 ** 32
    return np.minimum((draws * folds).astype(np.int64), folds - 1)


def candidate_lists(bundle: Bundle, features: RankFeatures, targets_before: str = "", pool_sample: int = 100,
                    seed: int = 0, progress=None, head: int = 0, scores_head: bool = False) -> RankLists:
    """The lists of every user with a target (see the module's docstring)."""
    dataset = load_dataset(Path(bundle.manifest["dataset"]["path"]))
    held = held_out(bundle, Histories.from_ratings(dataset.ratings, dataset.num_users), targets_before)
    if not len(held.users):
        raise ConfigError(f"no user has a held-out target under bundle {bundle.version}'s split")
    rng = np.random.default_rng(seed)
    slot_pool = int(bundle.manifest["options"].get("slot_pool", 400))
    pool = np.unique(np.concatenate([bundle.popular[:slot_pool], bundle.new[:slot_pool]]))
    advance = progress(len(held.users), "candidate lists") if progress else None
    parts = {key: [] for key in ("items", "features", "labels", "merged", "baseline")}
    sizes, scored_as = [], []
    sequences = np.zeros((len(held.users), SEQUENCE_ITEMS), dtype=np.int64)
    for row, (user, target) in enumerate(zip(held.users, held.targets)):
        context = bundle.context(int(user))
        scored_as.append(context.user)
        recent = context.sequence[-SEQUENCE_ITEMS:]
        sequences[row, SEQUENCE_ITEMS - len(recent):] = recent
        merged, _ = bundle.recaller.recall(context)
        rest = pool[context.allowed.array[pool]]
        rest = rest[~np.isin(rest, merged.items)]
        in_head = head_rows(merged, head)
        if in_head is not None:   # a cascade ranks only these (`rank.ranker.cascade`)
            merged = merged.subset(in_head)
        if scores_head:   # as `rank.ranker.score_head` serves them
            merged = fill_scores(context, bundle.recaller, merged)
        keep = rng.choice(len(rest), min(pool_sample, len(rest)), replace=False) if len(rest) else []
        sampled = np.union1d(rest[keep], rest[rest == target]).astype(np.int64)
        extra = bundle.recaller.score_items(context, sampled) if len(sampled) else None
        baseline = bundle.ranker.score(context, merged)
        if baseline is None:
            baseline = -np.arange(len(merged.items), dtype=np.float32)
        blocks = [(merged, True, baseline)] + ([(extra, False, np.full(len(sampled), -np.inf, np.float32))]
                                               if extra is not None else [])
        for block, recalled, base in blocks:
            parts["items"].append(block.items)
            parts["features"].append(features.matrix(context, block))
            parts["labels"].append(block.items == target)
            parts["merged"].append(np.full(len(block.items), recalled))
            parts["baseline"].append(base.astype(np.float32))
        sizes.append(sum(len(block.items) for block, _, _ in blocks))
        if advance:
            advance(1)
    codes = bundle.user_features[held.users]
    return RankLists(held.users, np.asarray(scored_as, dtype=np.int64), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                     *(np.concatenate(parts[key]) for key in ("items", "features", "labels", "merged", "baseline")),
                     user_codes=codes, sequences=sequences)


def check_earlier(more: Bundle, bundle: Bundle, targets_before: str = "") -> None:
    """Refuse another bundle's lists (`train ranker --more-lists`) unless every target of it is
    an earlier item of its user's history in `bundle`, the one the ranker validates on: never
    the item validated on, nor a later one such as the test item."""
    dataset = load_dataset(Path(more.manifest["dataset"]["path"]))
    held = held_out(more, Histories.from_ratings(dataset.ratings, dataset.num_users), targets_before)
    for user, target in zip(held.users, held.targets):
        if not np.isin(target, bundle.histories.of(int(user))):
            raise ConfigError(f"bundle {more.version} targets movie {int(target)} of user {int(user)}, which bundle "
                              f"{bundle.version} holds out: more lists must come from earlier items (a dataset "
                              "written with `movierec data --without-last N`, runs trained on it and a bundle of it)")


def bundle_item_histories(bundle: Bundle) -> Histories:
    """The histories, with timestamps, that `bundle` was built from."""
    last, after = split_of(bundle.manifest)
    return bundle_histories(load_dataset(Path(bundle.manifest["dataset"]["path"])).before(after), last)


def list_metrics(lists: RankLists, logits: np.ndarray, k: int = 10, recalled_only: bool = True) -> dict:
    """HR@k and NDCG@k of each list ordered by `logits` (the recalled candidates only, as the
    personalized slot; a list without its target counts 0), over all lists."""
    hits, gains = [], []
    for i in range(len(lists)):
        start, end = lists.indptr[i], lists.indptr[i + 1]
        keep = lists.merged[start:end] if recalled_only else np.ones(end - start, bool)
        labels, scores = lists.labels[start:end][keep], logits[start:end][keep]
        if not labels.any():
            hits.append(0.0)
            gains.append(0.0)
            continue
        target = int(np.flatnonzero(labels)[0])  # ties keep the list's order, as `rank` sorts
        position = int((scores > scores[target]).sum() + (scores[:target] == scores[target]).sum())
        hits.append(float(position < k))
        gains.append(1.0 / np.log2(position + 2) if position < k else 0.0)
    return {f"HR@{k}": float(np.mean(hits)) if hits else 0.0, f"NDCG@{k}": float(np.mean(gains)) if gains else 0.0,
            "lists": len(lists)}
