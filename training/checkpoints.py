"""Training runs on disk: config, last and best weights, optimizer state, run state; all
pickle-free `.npz`, written atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from movierec.errors import MovieRecError
from movierec.files import load_npz, save_npz


class CheckpointError(MovieRecError):
    """A run directory or checkpoint that cannot be used (missing, corrupt, other settings)."""


def save_tensors(path: Path, tensors: dict) -> None:
    """A state dict as .npz (no pickle), written atomically."""
    save_npz(path, {name: np.asarray(value.numpy() if hasattr(value, "numpy") else value)
                    for name, value in tensors.items()
                    if hasattr(value, "numpy") or isinstance(value, np.ndarray)})


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    return load_npz(path)


def _rename_keys(keys_to_values: dict, old_to_new: dict) -> dict:
    """Re-key optimizer accumulators ('<param name>_moment1_0', ...) by their parameter."""
    out = {}
    for key, value in keys_to_values.items():
        owner = max((name for name in old_to_new if key.startswith(name + "_")), key=len, default=None)
        if owner is None:
            raise CheckpointError(f"optimizer state {key!r} belongs to no parameter of this model")
        out[old_to_new[owner] + key[len(owner):]] = value
    return out


def save_optimizer(path: Path, model, optimizer) -> None:
    """Optimizer state keyed by structured parameter names ('item_emb.weight_moment1_0'),
    since Paddle's own names ('embedding_18.w_0') depend on how many layers a process built."""
    tensors = {k: v for k, v in optimizer.state_dict().items() if hasattr(v, "numpy")}
    save_tensors(path, _rename_keys(tensors, {p.name: n for n, p in model.named_parameters()}))


def load_optimizer(path: Path, model, optimizer) -> None:
    import paddle

    arrays = _rename_keys(load_tensors(path), {n: p.name for n, p in model.named_parameters()})
    optimizer.set_state_dict({k: paddle.to_tensor(v) for k, v in arrays.items()})


@dataclass
class TrainState:
    epoch: int = 0                      # epochs completed
    best_epoch: int = 0
    best_metric: float = float("-inf")
    bad_evals: int = 0
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    lr: float | None = None             # learning rate now (None: the config's, never decayed)
    plateau_evals: int = 0              # evaluations without improvement since the last lr change


class RunDir:
    """A training run on disk: config, last and best weights, state, metrics, curves."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.json"
        self.last_model = self.path / "last.model.npz"
        self.last_optimizer = self.path / "last.optimizer.npz"
        self.best_model = self.path / "best.model.npz"
        self.metrics = self.path / "metrics.json"
        self.curves = self.path / "curves.png"

    def has_checkpoint(self) -> bool:
        return self.state.is_file() and self.last_model.is_file()

    def read_config(self) -> dict:
        return json.loads(self.config.read_text())

    def read_state(self) -> TrainState:
        return TrainState(**json.loads(self.state.read_text()))



def load_model_weights(model, path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        tensors = load_tensors(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing[:3]}; wrong model or config?")
    for name, value in expected.items():
        if tuple(value.shape) != tensors[name].shape:
            raise CheckpointError(f"{path}: {name} has shape {tensors[name].shape}, "
                                  f"model expects {tuple(value.shape)}; wrong config?")
    model.set_state_dict({name: tensors[name] for name in expected})




Config = TypeVar("Config")


def restore_config(config_type: type[Config], saved: dict) -> Config:
    """A run's saved settings through its dataclass (its `from_saved` when it has one), so
    settings added since the run was made take their defaults."""
    restore = getattr(config_type, "from_saved", None) or (lambda values: config_type(**values))
    return restore(saved)


def read_run_config(run_dir: str | Path, config_type: type[Config], model_name: str) -> Config:
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise CheckpointError(f"{run_dir} holds no {model_name} run (no config.json)")
    try:
        return restore_config(config_type, run.read_config())
    except TypeError as exc:
        raise CheckpointError(f"{run_dir} is not a {model_name} run ({exc})") from exc


def load_trained(model, run_dir: str | Path, which: str = "best"):
    """`model` with a run's 'best' or 'last' weights, in eval mode."""
    run = RunDir(run_dir)
    load_model_weights(model, run.best_model if which == "best" else run.last_model)
    model.eval()
    return model
