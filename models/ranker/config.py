"""Every knob of a ranker run (`movierec train ranker`); saved with the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from movierec.errors import ConfigError
from movierec.options import option
from movierec.rank.features import GROUPS
from movierec.workdir import BUNDLES, WORKDIR

MODELS = {"ncf": "ncf-list", "ncf-list": "ncf-list", "lgbm": "lgbm"}  # --model -> ranker name


@dataclass
class RankerConfig:
    model: str = option("ncf", "'ncf' (NCF over the candidates, listwise, Paddle) or 'lgbm' (LightGBM "
                        "LambdaMART).")
    bundles: Path = option(BUNDLES, "A held-out bundle (built with --hold-out-last 2, or --hold-out-after DATE "
                           "and runs trained before it), or its root: its recall hands the ranker its candidates.")
    targets_before: str = option("", "With a --hold-out-after bundle: train on targets before this date only (the "
                                 "test period's start, so the ranker never sees a test target).")
    run_dir: Path | None = option(None, "Where the ranker run goes (default: movierec-work/runs/ranker-<model>).")
    features: str = option(",".join(GROUPS), "Feature groups: recall, popularity, side, history, ncf (leave one "
                           "out for an ablation).")
    pool_sample: int = option(100, "Items of the popular and new slots' pools added to each list as negatives.")
    poster_dims: int = option(8, "Dimensions the poster vectors are projected to (PCA).")
    epochs: int = option(15, "ncf: most epochs over the lists (the best on validation is kept).")
    lr: float = option(1e-3, "ncf: Adam learning rate.")
    batch_size: int = option(32, "ncf: lists per batch.")
    trees: int = option(300, "lgbm: most boosting rounds (early stopping on validation).")
    leaves: int = option(31, "lgbm: leaves per tree.")
    seed: int = option(42, "Seed for the pool sample, the validation users and training.")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of ncf, lgbm, not {self.model!r}")
        groups = tuple(g.strip() for g in str(self.features).split(",") if g.strip())
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise ConfigError(f"--features takes groups among {', '.join(GROUPS)}, not {self.features!r}")
        self.features = ",".join(groups)
        if min(self.pool_sample, self.poster_dims, self.epochs, self.batch_size, self.trees, self.leaves) < 0 or \
                min(self.epochs, self.batch_size, self.trees, self.leaves) == 0 or not self.lr > 0:
            raise ConfigError("--epochs, --batch-size, --trees, --leaves and --lr must be positive, "
                              "--pool-sample and --poster-dims at least 0")
        self.bundles = Path(self.bundles)
        if self.run_dir is None:
            self.run_dir = WORKDIR / "runs" / f"ranker-{MODELS[self.model]}"
        self.run_dir = Path(self.run_dir)

    @property
    def ranker(self) -> str:
        return MODELS[self.model]

    @property
    def groups(self) -> tuple:
        return tuple(self.features.split(","))
