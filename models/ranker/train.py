"""`movierec train ranker`: candidate lists from a held-out bundle (`data`), one model trained
on 80% of the users' lists, and, on the other 20%, its order scored beside the bundle's recall
order, and the served lists with it beside those the bundle serves (`validation.json`, what
`movierec build --ranker-run` chooses by)."""

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
from movierec.files import save_npz, write_json
from movierec.rank.features import FeatureSpec, ItemTable, RankFeatures
from movierec.rank.learned import (AGAINST_BUNDLE, MONITOR, POSTER_BASIS, RECALL_ORDER, RUN_CONFIG, SERVED,
                                   VALIDATION, paired_difference, project_posters)
from movierec.rank.rankers import RANKERS

from .config import RankerConfig
from .data import bundle_item_histories, candidate_lists, check_no_leakage, list_metrics, validation_users


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
    projected, has_poster = project_posters(posters, dataset.item_raw_ids()[1:], basis)
    table = ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder, projected, has_poster)
    ncf = None
    if "ncf" in config.groups:
        from movierec.models.ncf.training import exported_scorer

        ncf, _ = exported_scorer(dataset, ncf_run)
    spec = FeatureSpec(bundle.recaller.names, config.groups, len(bundle.encoder.genres),
                       table.posters.shape[1])
    features = RankFeatures(spec, table, ncf)
    lists = candidate_lists(bundle, features, config.targets_before, config.pool_sample, config.seed, progress)
    in_validation = validation_users(lists.users, config.seed)
    with_positive = np.zeros(len(lists), dtype=bool)
    with_positive[lists.with_positive()] = True
    train_lists = lists.subset(np.flatnonzero(~in_validation & with_positive))
    valid_all = lists.subset(np.flatnonzero(in_validation))
    valid_fit = lists.subset(np.flatnonzero(in_validation & with_positive))
    say(f"{len(lists):,} lists ({int(with_positive.mean() * 100)}% with the target among the candidates), "
        f"{len(lists.items):,} candidates, {len(spec.names())} features; training on {len(train_lists):,}, "
        f"validating on {len(valid_all):,}")

    if config.ranker == "lgbm":
        from .lgbm import fit_lgbm

        booster = fit_lgbm(train_lists, valid_fit, spec, config, run_dir, say)
        logits = booster.predict(valid_all.features, num_threads=2)
    else:
        from .listwise import lists_logits

        if config.ranker == "din":
            from .din import DIN as model_type, fit_din, sasrec_item_embeddings

            embeddings = sasrec_item_embeddings(Path(bundle.manifest["options"]["sasrec_run"]), dataset.num_items)
            scorer = fit_din(train_lists, valid_fit, spec, config, embeddings, run_dir, say)
        else:
            from .ncf_list import CandidateNCF as model_type, fit_ncf_list

            scorer = fit_ncf_list(train_lists, valid_fit, spec, config, ncf_run, dataset, run_dir, say)
        logits = lists_logits(model_type, scorer, valid_all)
    validation = {**list_metrics(valid_all, logits), RECALL_ORDER: list_metrics(valid_all, valid_all.baseline),
                  "bundle ranker": bundle.manifest["rank"]["name"], "users": len(valid_all)}
    if not is_main():   # several processes: the first writes the run
        return validation
    ranker_type = RANKERS.get(config.ranker)
    ranker = ranker_type(features, ranker_type.model_from_run(run_dir, spec), {})
    validation[SERVED] = served(bundle, ranker, valid_all.users, config.targets_before, gains=True)
    validation[RECALL_ORDER][SERVED] = served(bundle, bundle.ranker, valid_all.users, config.targets_before, gains=True)
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
    say(f"validation ({len(valid_all):,} users): {config.ranker} NDCG@10 {validation[MONITOR]:.4f} HR@10 "
        f"{validation['HR@10']:.4f}; recall order NDCG@10 {validation[RECALL_ORDER][MONITOR]:.4f} HR@10 "
        f"{validation[RECALL_ORDER]['HR@10']:.4f}")
    say(f"served lists: with {config.ranker} NDCG@10 {validation[SERVED][MONITOR]:.4f} HR@10 "
        f"{validation[SERVED]['HR@10']:.4f}; as the bundle serves them NDCG@10 "
        f"{validation[RECALL_ORDER][SERVED][MONITOR]:.4f} HR@10 {validation[RECALL_ORDER][SERVED]['HR@10']:.4f}; "
        f"paired difference {validation[SERVED][AGAINST_BUNDLE]['difference']:+.4f} "
        f"(standard error {validation[SERVED][AGAINST_BUNDLE]['standard error']:.4f})")
    return json.loads((run_dir / VALIDATION).read_text())
