"""Every knob of a SASRec run; saved with the run, so a resume cannot mix settings.

Defaults are the paper's ML-1M settings. The CLI's `train sasrec` options are these fields."""

from __future__ import annotations

from dataclasses import dataclass

from movierec.errors import ConfigError
from movierec.options import option
from movierec.training.loop import check_settings

LOSSES = ("bce", "ce", "sampled-ce")
WINDOWS = ("last", "random")
WEIGHTINGS = ("batch", "position")
LR_DECAY_HELP = ("Multiply the learning rate by this after --lr-patience validations without improvement "
                 "(reduce on plateau); 1 keeps it constant. May change when a run resumes.")
LR_PATIENCE_HELP = "Validations without improvement before each --lr-decay."
HOLD_OUT_AFTER_HELP = ("Train on the ratings before this date only (YYYY-MM-DD, UTC), so that a bundle built "
                       "with the same --hold-out-after can be evaluated on what came after.")


@dataclass
class SASRecConfig:
    maxlen: int = option(200, "Most recent items of a sequence the model reads.")
    hidden: int = option(50, "Embedding and hidden size.")
    blocks: int = option(2, "Self-attention blocks.")
    heads: int = option(1, "Attention heads.")
    dropout: float = option(0.2, "Dropout rate.")
    lr: float = option(1e-3, "Adam learning rate.")
    batch_size: int = option(128, "Users per batch.")
    epochs: int = option(200, "Maximum number of epochs.")
    loss: str = option("bce", "'bce' (paper: one sampled negative per position), 'ce' (full softmax) or "
                       "'sampled-ce' (softmax over --num-negatives).")
    num_negatives: int = option(256, "Shared negatives per batch for --loss sampled-ce.")
    window: str = option("last", "Training window of histories longer than --maxlen: 'last' (the paper) or "
                         "'random' (a window drawn anew each epoch).")
    weighting: str = option("position", "Loss of a batch (users of similar length): 'position' (every position "
                            "weighs the same across the epoch, as in the paper's batches of mixed lengths) or "
                            "'batch' (the mean over its positions).")
    patience: int = option(10, "Stop after N validations without improvement.")
    lr_decay: float = option(1.0, LR_DECAY_HELP)
    lr_patience: int = option(3, LR_PATIENCE_HELP)
    eval_every: int = option(5, "Validate every N epochs.")
    monitor: str = option("full.NDCG@10", "Validation metric that picks the best checkpoint.")
    seed: int = option(42, "Seed for initialisation, sampling and dropout.")
    hold_out_after: str = option("", HOLD_OUT_AFTER_HELP)

    @classmethod
    def from_saved(cls, saved: dict) -> "SASRecConfig":
        """A run's saved settings; runs saved before `weighting` existed trained with 'batch'."""
        return cls(**{"weighting": "batch", **saved})

    def __post_init__(self) -> None:
        check_settings(self, {"loss": LOSSES, "window": WINDOWS, "weighting": WEIGHTINGS},
                       ("maxlen", "hidden", "blocks", "heads", "batch_size", "epochs", "num_negatives",
                        "patience", "eval_every"))
        if self.hidden % self.heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
