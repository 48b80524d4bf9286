"""`movierec train ranker`: candidate lists from a held-out bundle (`data`), the users split
into folds; the served model validated on the first fold, stopped early on the second and
trained on the rest, and, cross-fitted, one more model per other fold the same way (stopped on
the fold after it), so that every user is validated by a model that neither trained nor
stopped early on them: its order scored beside the bundle's recall order,
and the served lists with it beside those the bundle serves (`validation.json`, what `movierec
build --ranker-run` chooses by)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from movierec.bundle.heldout import split_of
from movierec.bundle.loader import load_bundle
from movierec.dataset.posters import catalogue_posters, load_posters
from movierec.dataset.store import load_dataset
from movierec.errors import ConfigError
from movierec.files import save_npz, write_json
from movierec.rank.features import FeatureSpec, ItemTable, RankFeatures
from movierec.rank.learned import (AGAINST_BUNDLE, MONITOR, POSTER_BASIS, RECALL_ORDER, RUN_CONFIG, SERVED,
                                   VALIDATION, paired_difference, project_posters)
from movierec.rank.rankers import RANKERS

from .config import RankerConfig
from .data import (RankLists, bundle_item_histories, candidate_lists, check_earlier, check_no_leakage, list_metrics,
                   user_folds)


def poster_basis(poster_file: Path | None, item_raw_ids: np.ndarray, dims: int) -> np.ndarray | None:
    """The top `dims` principal directions of the catalogue's (centred, normalised) posters."""
    if poster_file is None or not dims:
        return None
    vectors, has_poster = catalogue_posters(load_posters(poster_file), item_raw_ids)
    rows = vectors[has_poster > 0]
    if len(rows) <= dims:
        return None
    _, _, vt = np.linalg.svd(rows - rows.mean(axis=0), full_matrices=False)
    return vt[:dims].T.astype(np.float32)


def _posters_of(manifest: dict) -> Path | None:
    from movierec.models.ncf.training import POSTERS_FILE

    options = manifest["options"]
    if options.get("posters"):
        return Path(options["posters"])
    trained_with = Path(options["ncf_run"]) / POSTERS_FILE
    return trained_with if trained_with.is_file() else None


def pooled(parts: list[dict]) -> dict:
    """The figures of several groups of users' served lists as one: each mean weighted by its
    group's users, the per-user gains joined in order."""
    users = sum(part["users"] for part in parts)
    means = {key: sum(part[key] * part["users"] for part in parts) / max(users, 1)
             for key in parts[0] if key not in ("users", "gains")}
    return {**means, "users": users, "gains": np.concatenate([part["gains"] for part in parts])}


def _fitter(config: RankerConfig, spec: FeatureSpec, bundle, dataset, ncf_run: Path, say: Callable) -> Callable:
    """`fit(train, stop_on, model_dir) -> (model, score)`: one model of the run's kind trained on
    the lists `train`, stopped early on `stop_on`, written to `model_dir`; `score(lists)` gives
    every row's logit."""
    if config.ranker == "lgbm":
        from movierec.rank.rankers.lgbm import MODEL_FILE, CompiledTrees

        from .lgbm import fit_lgbm

        def fit(train, stop_on, model_dir):
            booster = fit_lgbm(train, stop_on, spec, config, model_dir, say)
            # the served lists are scored as the server will score them; the lists' logits,
            # many rows at once, by LightGBM on both cores
            return CompiledTrees(model_dir / MODEL_FILE), lambda lists: booster.predict(lists.features, num_threads=2)
        return fit

    from .listwise import lists_logits

    if config.ranker == "din":
        from .din import DIN as model_type, fit_din, sasrec_item_embeddings

        embeddings = sasrec_item_embeddings(Path(bundle.manifest["options"]["sasrec_run"]), dataset.num_items)

        def fit_scorer(train, stop_on, model_dir):
            return fit_din(train, stop_on, spec, config, embeddings, model_dir, say)
    else:
        from .ncf_list import CandidateNCF as model_type, fit_ncf_list

        def fit_scorer(train, stop_on, model_dir):
            return fit_ncf_list(train, stop_on, spec, config, ncf_run, dataset, model_dir, say)

    def fit(train, stop_on, model_dir):
        scorer = fit_scorer(train, stop_on, model_dir)
        return scorer, lambda lists: lists_logits(model_type, scorer, lists)
    return fit


def bundle_features(bundle, dataset, config: RankerConfig, basis: np.ndarray | None) -> RankFeatures:
    """The features of `config.groups` as `bundle` gives them: its own item table (popularity
    from its own ratings) and, with the `ncf` group, its NCF run's scorer. `dataset`: the
    bundle's, before its time cut."""
    posters = _posters_of(bundle.manifest) if "side" in config.groups else None
    projected, has_poster = project_posters(posters, dataset.item_raw_ids()[1:], basis)
    table = ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder, projected, has_poster)
    ncf = None
    if "ncf" in config.groups:
        from movierec.models.ncf.training import exported_scorer

        ncf, _ = exported_scorer(dataset, Path(bundle.manifest["options"]["ncf_run"]))
    spec = FeatureSpec(bundle.recaller.names, config.groups, len(bundle.encoder.genres), table.posters.shape[1])
    return RankFeatures(spec, table, ncf)


def more_lists(bundle, dataset, config: RankerConfig, basis: np.ndarray | None, progress=None) -> RankLists | None:
    """The lists of the `--more-lists` bundles, for training only: each passes the leakage
    guard, has `bundle`'s catalogue and recall channels, and targets earlier items than
    `bundle` (`check_earlier`)."""
    parts = []
    for root in config.more_lists:
        more = load_bundle(Path(root), with_rankings=False)
        check_no_leakage(more)
        if more.recaller.names != bundle.recaller.names:
            raise ConfigError(f"bundle {more.version} recalls with {', '.join(more.recaller.names)}, bundle "
                              f"{bundle.version} with {', '.join(bundle.recaller.names)}: more lists need the same channels")
        more_dataset = load_dataset(Path(more.manifest["dataset"]["path"])).before(split_of(more.manifest)[1])
        if more_dataset.signature() != dataset.signature():
            raise ConfigError(f"bundle {more.version} was built from another catalogue than bundle {bundle.version}")
        check_earlier(more, bundle, config.targets_before)
        parts.append(candidate_lists(more, bundle_features(more, more_dataset, config, basis), config.targets_before,
                                     config.pool_sample, config.seed, progress, config.head,
                                     config.scores_head))
    return RankLists.joined(parts) if parts else None


def train_ranker(config: RankerConfig, served: Callable, say: Callable[[str], None] = print, progress=None) -> dict:
    """Train, validate and write one ranker run. `served(bundle, ranker, users, targets_before, gains=True)`
    scores the lists the server would return to the validating users with a given ranker
    (`client.quality.served_validation`; training sits below the server, so it is handed in)."""
    from movierec.training.distributed import barrier, is_main, start

    start()   # joins the other processes when launched with --nproc
    started = time.perf_counter()
    bundle = load_bundle(config.bundles, with_rankings=False)
    check_no_leakage(bundle)
    last, after = split_of(bundle.manifest)
    dataset = load_dataset(Path(bundle.manifest["dataset"]["path"])).before(after)
    ncf_run = Path(bundle.manifest["options"]["ncf_run"])
    run_dir = config.run_dir
    if is_main():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
    barrier()

    posters = _posters_of(bundle.manifest) if "side" in config.groups else None
    basis = poster_basis(posters, dataset.item_raw_ids()[1:], config.poster_dims)
    if basis is not None and is_main():
        save_npz(run_dir / POSTER_BASIS, {"basis": basis})
    features = bundle_features(bundle, dataset, config, basis)
    spec = features.spec
    lists = candidate_lists(bundle, features, config.targets_before, config.pool_sample, config.seed, progress,
                            config.head, config.scores_head)
    more = more_lists(bundle, dataset, config, basis, progress)
    folds = user_folds(lists.users, config.seed, config.folds)
    with_positive = np.zeros(len(lists), dtype=bool)
    with_positive[lists.with_positive()] = True
    if more is not None:
        more_folds = user_folds(more.users, config.seed, config.folds)
        more_positive = np.zeros(len(more), dtype=bool)
        more_positive[more.with_positive()] = True
    validated = config.folds if config.cross_fit else 1
    say(f"{len(lists):,} lists ({int(with_positive.mean() * 100)}% with the target among the candidates), "
        f"{len(lists.items):,} candidates, {len(spec.names())} features; {config.folds} folds of users, "
        f"{validated} validated, each by a model trained on the others"
        + (f"; {len(more):,} more lists of earlier items for training" if more is not None else ""))
    ranker_type = RANKERS.get(config.ranker)
    fit = _fitter(config, spec, bundle, dataset, ncf_run, say)
    logits = np.zeros(len(lists.items), np.float32)
    served_lists, bundle_lists = [], []
    for fold in range(validated):
        # a fold is scored by a model that stopped early on the next fold: stopping on the scored
        # fold itself would pick the best of many rounds or epochs on it and flatter the figure
        stop_fold = (fold + 1) % config.folds
        held, stopping = folds == fold, folds == stop_fold
        valid = lists.subset(np.flatnonzero(held))
        # the served model is the first fold's, in the run directory; the others' go when done
        model_dir = run_dir if fold == 0 else run_dir / "folds" / str(fold)
        train = lists.subset(np.flatnonzero(~held & ~stopping & with_positive))
        if more is not None:   # the same users' earlier items, never those of the scored or stopping fold
            train = RankLists.joined([train, more.subset(np.flatnonzero(
                (more_folds != fold) & (more_folds != stop_fold) & more_positive))])
        say(f"fold {fold + 1} of {validated}: training on {len(train):,} lists, stopping early on "
            f"{int(stopping.sum()):,}, validating on {int(held.sum()):,}")
        if is_main():
            model_dir.mkdir(parents=True, exist_ok=True)
        model, score = fit(train, lists.subset(np.flatnonzero(stopping & with_positive)), model_dir)
        logits[lists.rows(np.flatnonzero(held))] = score(valid)
        if is_main():
            ranker = ranker_type(features, model, {}, config.head, config.scores_head)
            served_lists.append(served(bundle, ranker, valid.users, config.targets_before, gains=True))
            bundle_lists.append(served(bundle, bundle.ranker, valid.users, config.targets_before, gains=True))
    validating = lists.subset(np.flatnonzero(folds < validated))
    validation = {**list_metrics(validating, logits[lists.rows(np.flatnonzero(folds < validated))]),
                  RECALL_ORDER: list_metrics(validating, validating.baseline),
                  "bundle ranker": bundle.manifest["rank"]["name"], "users": len(validating),
                  "folds": config.folds, "validated folds": validated}
    if not is_main():   # several processes: the first writes the run
        return validation
    shutil.rmtree(run_dir / "folds", ignore_errors=True)
    validation[SERVED], validation[RECALL_ORDER][SERVED] = pooled(served_lists), pooled(bundle_lists)
    validation[SERVED][AGAINST_BUNDLE] = paired_difference(validation[SERVED].pop("gains"),
                                                           validation[RECALL_ORDER][SERVED].pop("gains"))
    write_json(run_dir / VALIDATION, validation)
    write_json(run_dir / RUN_CONFIG, {
        "ranker": config.ranker, "features": spec.to_dict(), "feature_names": spec.names(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "trained_on": {"bundle": bundle.version, "bundle_path": str(bundle.path),
                       "split": {"hold_out_last": last, "hold_out_after": after,
                                 "targets_before": config.targets_before},
                       "dataset": bundle.manifest["dataset"], "ncf_run": str(ncf_run)},
        "seconds": round(time.perf_counter() - started, 1),
    })
    say(f"validation ({len(validating):,} users): {config.ranker} NDCG@10 {validation[MONITOR]:.4f} HR@10 "
        f"{validation['HR@10']:.4f}; recall order NDCG@10 {validation[RECALL_ORDER][MONITOR]:.4f} HR@10 "
        f"{validation[RECALL_ORDER]['HR@10']:.4f}")
    say(f"served lists: with {config.ranker} NDCG@10 {validation[SERVED][MONITOR]:.4f} HR@10 "
        f"{validation[SERVED]['HR@10']:.4f}; as the bundle serves them NDCG@10 "
        f"{validation[RECALL_ORDER][SERVED][MONITOR]:.4f} HR@10 {validation[RECALL_ORDER][SERVED]['HR@10']:.4f}; "
        f"paired difference {validation[SERVED][AGAINST_BUNDLE]['difference']:+.4f} "
        f"(standard error {validation[SERVED][AGAINST_BUNDLE]['standard error']:.4f})")
    return json.loads((run_dir / VALIDATION).read_text())
