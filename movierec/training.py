"""What every model's training shares: seeding, pickle-free checkpoints, resume,
early stopping on a validation metric, a metrics JSON and a PNG of the curves."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from movierec.errors import MovieRecError

# Settings a resumed run may change: they extend, shorten or anneal training from where it
# stands, not what was trained up to there.
RESUMABLE_SETTINGS = frozenset({"epochs", "patience", "lr_decay", "lr_patience"})


class CheckpointError(MovieRecError):
    """A run directory or checkpoint that cannot be used (missing, corrupt, other settings)."""


def check_lr_schedule(lr_decay: float, lr_patience: int) -> None:
    if not 0.0 < lr_decay <= 1.0:
        raise ValueError("lr_decay must be in (0, 1]")
    if lr_patience <= 0:
        raise ValueError("lr_patience must be positive")


def seed_everything(seed: int) -> None:
    import paddle

    random.seed(seed)
    np.random.seed(seed % (2**32))
    paddle.seed(seed)


def save_tensors(path: Path, tensors: dict) -> None:
    """A state dict as .npz (no pickle), written atomically."""
    arrays = {name: np.asarray(value.numpy() if hasattr(value, "numpy") else value)
              for name, value in tensors.items()
              if hasattr(value, "numpy") or isinstance(value, np.ndarray)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


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


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


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


def optimise_epoch(optimizer, batch_losses, advance=None) -> float:
    """One pass of gradient steps over `batch_losses`, which yields (loss tensor, batch size)
    per batch; returns the mean loss weighted by batch size."""
    total, count = 0.0, 0
    for loss, size in batch_losses:
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
        total += float(loss) * size
        count += size
        if advance:
            advance()
    return total / max(count, 1)


def fit(
    run: RunDir,
    model,
    optimizer,
    config,
    train_epoch: Callable[[int], float],
    validate: Callable[[], dict],
    on_epoch: Callable[[TrainState, dict], None] | None = None,
) -> TrainState:
    """Train for `config.epochs`, resuming from `run`'s last checkpoint when there is one.

    The loop reads its settings from the model's config: `epochs`, `eval_every`, `seed`,
    `monitor`, `patience`, `lr_decay` and `lr_patience`. `validate()` returns nested metrics
    ({'full': {'NDCG@10': ...}, ...}); `monitor` names one as 'full.NDCG@10'. The best weights
    by it go to `best.model.npz`; training stops after `patience` evaluations without
    improvement. With `lr_decay` < 1 the learning rate is multiplied by it after every
    `lr_patience` evaluations without improvement (reduce on plateau). Each epoch reseeds from
    (seed, epoch), and the current learning rate is part of the state, so a resumed run takes
    the same path as an uninterrupted one.
    """
    epochs, patience, eval_every, seed = config.epochs, config.patience, config.eval_every, config.seed
    lr_decay, lr_patience = config.lr_decay, config.lr_patience
    run.path.mkdir(parents=True, exist_ok=True)
    config_dict = json.loads(json.dumps(asdict(config)))
    if run.has_checkpoint():
        try:  # through the dataclass, so settings added since the run was made take their defaults
            restore = getattr(type(config), "from_saved", None) or (lambda saved: type(config)(**saved))
            saved = json.loads(json.dumps(asdict(restore(run.read_config()))))
        except TypeError as exc:
            raise CheckpointError(f"{run.path} holds a run of another model ({exc})") from exc
        changed = sorted(k for k in set(saved) | set(config_dict)
                         if saved.get(k) != config_dict.get(k) and k not in RESUMABLE_SETTINGS)
        if changed:
            raise CheckpointError(f"{run.path} holds a run with other settings ({', '.join(changed)}); "
                                  "use a new --run-dir or pass --no-resume to start over")
        write_json(run.config, config_dict)
        state = run.read_state()
        load_model_weights(model, run.last_model)
        load_optimizer(run.last_optimizer, model, optimizer)
    else:
        state = TrainState()
        write_json(run.config, config_dict)
    if state.lr is None:
        state.lr = float(optimizer.get_lr())
    optimizer.set_lr(state.lr)

    group, key = config.monitor.split(".", 1)
    while state.epoch < epochs and state.bad_evals < patience:
        epoch = state.epoch + 1
        seed_everything(seed * 100_003 + epoch)
        started = time.perf_counter()
        model.train()
        loss = float(train_epoch(epoch))
        state.train_seconds += time.perf_counter() - started
        record = {"epoch": epoch, "loss": loss, "lr": state.lr,
                  "train_seconds": round(state.train_seconds, 2)}
        if epoch % eval_every == 0 or epoch == epochs:
            model.eval()
            metrics = validate()
            record["valid"] = metrics
            value = metrics[group][key]
            if value > state.best_metric:
                state.best_metric, state.best_epoch = value, epoch
                state.bad_evals = state.plateau_evals = 0
                save_tensors(run.best_model, model.state_dict())
            else:
                state.bad_evals += 1
                state.plateau_evals += 1
                if lr_decay < 1.0 and state.plateau_evals >= lr_patience:
                    state.lr *= lr_decay
                    state.plateau_evals = 0
                    optimizer.set_lr(state.lr)
        state.epoch = epoch
        state.history.append(record)
        save_tensors(run.last_model, model.state_dict())
        save_optimizer(run.last_optimizer, model, optimizer)
        write_json(run.state, asdict(state))
        plot_curves(state.history, run.curves, config.monitor)
        if on_epoch is not None:
            on_epoch(state, record)
    return state


def plot_curves(history: list[dict], path: Path, monitor: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    evaluated = [h for h in history if "valid" in h]
    for protocol, style in (("sampled", "--"), ("full", "-")):
        for metric, color in (("NDCG@10", "tab:green"), ("HR@10", "tab:orange")):
            points = [(h["epoch"], h["valid"][protocol][metric]) for h in evaluated
                      if metric in h["valid"].get(protocol, {})]
            if points:
                xs, ys = zip(*points)
                ax_metric.plot(xs, ys, style, color=color, label=f"{protocol} {metric}")
    rates = [(h["epoch"], h["lr"]) for h in history if h.get("lr") is not None]
    for (_, before), (epoch, after) in zip(rates, rates[1:]):
        if after != before:
            ax_metric.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1)
            ax_metric.annotate(f"lr {after:.1e}", (epoch - 0.5, 0.02), xycoords=("data", "axes fraction"),
                               rotation=90, fontsize=7, color="grey")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title(f"validation (monitor: {monitor})")
    if evaluated:
        ax_metric.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
