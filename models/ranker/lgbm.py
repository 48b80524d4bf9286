"""Training the `lgbm` ranker: LightGBM LambdaMART over the candidate lists, NDCG@10 on the
validation lists for early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.files import write_bytes
from movierec.rank.features import FeatureSpec
from movierec.rank.rankers.lgbm import MODEL_FILE

from .config import RankerConfig
from .data import RankLists


def _dataset(lists: RankLists, spec: FeatureSpec, reference=None):
    import lightgbm

    return lightgbm.Dataset(lists.features, lists.labels.astype(np.int32), group=np.diff(lists.indptr),
                            feature_name=spec.names(), categorical_feature=spec.categorical(),
                            reference=reference, free_raw_data=False)


def fit_lgbm(train: RankLists, valid: RankLists, spec: FeatureSpec, config: RankerConfig, run_dir: Path,
             say=print):
    """Train, write the best iteration's model to the run; returns the booster."""
    import lightgbm

    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": 0.05,
              "num_leaves": config.leaves, "min_data_in_leaf": 200, "min_data_per_group": 200, "cat_smooth": 50, "lambda_l2": 10.0, "feature_fraction": 0.8,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambdarank_truncation_level": 30,
              "seed": config.seed, "num_threads": 2, "verbose": -1, "deterministic": True,
              "force_row_wise": True}
    train_set = _dataset(train, spec)
    valid_set = _dataset(valid, spec, reference=train_set)
    booster = lightgbm.train(params, train_set, config.trees, valid_sets=[valid_set],
                             callbacks=[lightgbm.early_stopping(30, verbose=False)])
    say(f"LightGBM: best iteration {booster.best_iteration} of {booster.current_iteration()}")
    text = booster.model_to_string(num_iteration=booster.best_iteration)
    write_bytes(run_dir / MODEL_FILE, text.encode())
    return lightgbm.Booster(model_str=text)
