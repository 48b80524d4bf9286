"""Every knob of a two-tower run; saved with the run. The CLI's `train two-tower` options are
these fields."""

from __future__ import annotations

from dataclasses import dataclass

from movierec.models.sasrec.config import HOLD_OUT_AFTER_HELP, LR_DECAY_HELP, LR_PATIENCE_HELP
from movierec.options import option
from movierec.training.loop import check_settings


@dataclass
class TwoTowerConfig:
    dim: int = option(64, "Size of the user and movie vectors.")
    side_dim: int = option(16, "Embedding size of each side feature.")
    hidden: int = option(128, "Width of each tower's hidden layer.")
    history: int = option(20, "Most recent items whose mean embedding the user tower reads.")
    temperature: float = option(0.05, "Softmax temperature of the inner products.")
    cold_share: float = option(0.25, "Share of training examples seen as a new user's (side features only).")
    id_dropout: float = option(0.25, "Share of the other examples whose user id is hidden (history and side features only).")
    item_id_dropout: float = option(0.1, "Share of examples whose movie id is hidden, so the tower serves unrated movies.")
    hard_negatives: int = option(50, "From the second epoch, one extra negative per example drawn from the user's "
                                 "top N of the model's own scores (0 = none).")
    dropout: float = option(0.1, "Dropout rate.")
    lr: float = option(1e-3, "Adam learning rate.")
    batch_size: int = option(1024, "Examples per batch (and in-batch negatives).")
    epochs: int = option(20, "Maximum number of epochs.")
    patience: int = option(3, "Stop after N validations without improvement.")
    lr_decay: float = option(1.0, LR_DECAY_HELP)
    lr_patience: int = option(3, LR_PATIENCE_HELP)
    eval_every: int = option(1, "Validate every N epochs.")
    monitor: str = option("full.NDCG@10", "Validation metric that picks the best checkpoint.")
    seed: int = option(42, "Seed for initialisation, sampling and dropout.")
    content: bool = option(True, "Read the movies' content vectors (from --content-run).", cli=False)
    hold_out_after: str = option("", HOLD_OUT_AFTER_HELP)

    def __post_init__(self) -> None:
        check_settings(self, {}, ("dim", "side_dim", "hidden", "history", "batch_size", "epochs", "patience",
                                  "eval_every", "temperature"))
        from movierec.errors import ConfigError

        for name in ("cold_share", "id_dropout", "item_id_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1)")
        if self.hard_negatives < 0:
            raise ConfigError("hard_negatives must be at least 0")
