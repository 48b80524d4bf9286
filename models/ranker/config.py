"""Every knob of a ranker run (`movierec train ranker`); saved with the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from movierec.errors import ConfigError
from movierec.options import option
from movierec.rank.features import GROUPS
from movierec.workdir import BUNDLES, WORKDIR

SEQUENCE_ITEMS = 50  # the most recent items of each request kept with its candidate list
MODELS = {"ncf": "ncf-list", "ncf-list": "ncf-list", "lgbm": "lgbm", "din": "din"}  # --model -> ranker name
# Feature groups by default: the neural rankers hold NCF's embeddings (ncf-list) or read the
# history themselves (din), so the NCF logit would only add its cost to every request; the
# `list` shares were validated with trees only.
DEFAULT_GROUPS = {"lgbm": GROUPS, "ncf-list": tuple(g for g in GROUPS if g not in ("ncf", "list")),
                  "din": tuple(g for g in GROUPS if g not in ("ncf", "list"))}


@dataclass
class RankerConfig:
    model: str = option("ncf", "'ncf' (NCF over the candidates, listwise, Paddle), 'lgbm' (LightGBM "
                        "LambdaMART) or 'din' (Deep Interest Network over the recent items, listwise, Paddle).")
    bundles: Path = option(BUNDLES, "A held-out bundle (built with --hold-out-last 2, or --hold-out-after DATE "
                           "and runs trained before it), or its root: its recall hands the ranker its candidates.")
    targets_before: str = option("", "With a --hold-out-after bundle: train on targets before this date only (the "
                                 "test period's start, so the ranker never sees a test target).")
    more_lists: tuple = option((), "Another held-out bundle whose candidate lists are added to training, never to "
                               "validation, repeatable: each user's earlier items (a dataset written with `movierec "
                               "data --without-last N`, runs trained on it and bundles built from them; every target "
                               "must be an earlier item than those --bundles holds out).", flag="--more-lists",
                               repeat=True)
    run_dir: Path | None = option(None, "Where the ranker run goes (default: movierec-work/runs/ranker-<model>).")
    features: str = option("", "Feature groups among recall, popularity, side, history, ncf, list (leave one out "
                           "for an ablation); default: all for lgbm, all but ncf and list for ncf and din.")
    head: int = option(0, "Rank only each list's first K candidates in the recall order (SASRec's), trained and "
                       "served alike, the others following them in that order: a cascade that cuts the request "
                       "path's cost; 0 ranks every candidate.")
    scores_head: bool = option(False, "Every recall channel scores each candidate of the head (with --head 0, every "
                               "candidate), not only those it proposed, trained and served alike: the ranker reads "
                               "each channel's score of every candidate it ranks.")
    pool_sample: int = option(100, "Items of the popular and new slots' pools added to each list as negatives.")
    poster_dims: int = option(8, "Dimensions the poster vectors are projected to (PCA).")
    epochs: int = option(15, "ncf, din: most epochs over the lists (the best on validation is kept).")
    lr: float = option(1e-3, "ncf, din: Adam learning rate.")
    batch_size: int = option(32, "ncf, din: lists per batch.")
    history: int = option(10, "din: the user's most recent items each candidate attends over (10: as good as 20 on "
                          "validation, at three quarters of the cost; README, Ranker ablation).")
    attention_units: int = option(16, "din: units of the activation unit that weighs each recent item for a "
                                  "candidate; its request-path cost grows with them.")
    trees: int = option(300, "lgbm: most boosting rounds (early stopping on validation).")
    leaves: int = option(31, "lgbm: leaves per tree.")
    folds: int = option(5, "The users are split into this many folds (by a hash of the seed and the user); the "
                        "ranker the run serves is validated on the first, stops early on the second and trains on the rest.")
    cross_fit: bool = option(True, "Validate every fold, each with a model trained on the others (--folds models in "
                             "all), so that the run's validation figures, which `build --ranker-run` chooses by, "
                             "cover every user; --no-cross-fit validates the served model's own fold only.")
    seed: int = option(42, "Seed for the pool sample, the validation users and training.")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of ncf, lgbm, din, not {self.model!r}")
        groups = tuple(g.strip() for g in str(self.features).split(",") if g.strip()) or DEFAULT_GROUPS[self.ranker]
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise ConfigError(f"--features takes groups among {', '.join(GROUPS)}, not {self.features!r}")
        self.features = ",".join(groups)
        positive = (self.epochs, self.batch_size, self.trees, self.leaves, self.attention_units)
        if min(self.pool_sample, self.poster_dims) < 0 or 0 < self.head < 10 or not self.lr > 0 or min(positive) <= 0 or \
                self.folds < 3 or not 0 < self.history <= SEQUENCE_ITEMS:
            raise ConfigError(f"--epochs, --batch-size, --trees, --leaves, --attention-units and --lr must be positive, "
                              f"--folds at least 3, --history between 1 and {SEQUENCE_ITEMS}, --pool-sample and "
                              f"--poster-dims at least 0, --head 0 or at least 10")
        self.bundles = Path(self.bundles)
        self.more_lists = tuple(str(root) for root in self.more_lists)
        if self.run_dir is None:
            self.run_dir = WORKDIR / "runs" / f"ranker-{MODELS[self.model]}"
        self.run_dir = Path(self.run_dir)

    @property
    def ranker(self) -> str:
        return MODELS[self.model]

    @property
    def groups(self) -> tuple:
        return tuple(self.features.split(","))
