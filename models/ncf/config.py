"""Every knob of an NCF run; saved with the run. The CLI's `train ncf` options are these fields."""

from __future__ import annotations

from dataclasses import dataclass

from movierec.errors import ConfigError
from movierec.models.sasrec.config import HOLD_OUT_AFTER_HELP, LR_DECAY_HELP, LR_PATIENCE_HELP
from movierec.options import option
from movierec.training.loop import check_settings

LOSSES = ("bce", "bpr")
SAMPLERS = ("uniform", "popularity")


@dataclass
class NCFConfig:
    gmf_dim: int = option(32, "GMF embedding size.")
    mlp_layers: tuple = option((64, 32, 16), "MLP tower widths; the first is split between user and item.")
    side_dim: int = option(8, "Embedding size of each side feature.")
    poster_dim: int = option(16, "Size the poster vector is projected to.")
    fusion_hidden: int = option(32, "Width of the fusion layer.")
    dropout: float = option(0.2, "Dropout rate.")
    mlp: bool = option(True, "Use the MLP path; --no-mlp leaves GMF only.")
    side_features: bool = option(True, "Fuse user (gender, age, occupation, zip prefix) and movie (year, genres) "
                                 "side features.")
    posters: bool = option(True, "Fuse poster vectors (set by --posters / --no-posters).", cli=False)
    lr: float = option(1e-3, "Adam learning rate.")
    batch_size: int = option(1024, "Positives per batch (each with its negatives).")
    epochs: int = option(30, "Maximum number of epochs.")
    num_negatives: int = option(4, "Negatives per positive.")
    sampler: str = option("uniform", "Negative sampler: 'uniform' or 'popularity' (count^0.75).")
    loss: str = option("bce", "'bce' (pointwise) or 'bpr' (pairwise).")
    patience: int = option(5, "Stop after N validations without improvement.")
    lr_decay: float = option(1.0, LR_DECAY_HELP)
    lr_patience: int = option(3, LR_PATIENCE_HELP)
    eval_every: int = option(1, "Validate every N epochs.")
    monitor: str = option("sampled.HR@10", "Validation metric that picks the best checkpoint.")
    seed: int = option(42, "Seed for initialisation, sampling and dropout.")
    hold_out_after: str = option("", HOLD_OUT_AFTER_HELP)

    def __post_init__(self) -> None:
        self.mlp_layers = tuple(int(x) for x in self.mlp_layers)
        check_settings(self, {"loss": LOSSES, "sampler": SAMPLERS},
                       ("gmf_dim", "side_dim", "poster_dim", "fusion_hidden", "batch_size", "epochs",
                        "num_negatives", "patience", "eval_every"))
        if len(self.mlp_layers) < 2 or min(self.mlp_layers) <= 0:
            raise ConfigError("mlp_layers must be two or more positive sizes, e.g. 64,32,16")
