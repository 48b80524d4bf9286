"""What every model's training shares: seeding, resume from the last checkpoint, early
stopping on a validation metric, reduce-on-plateau learning rates, the curves PNG."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from movierec.errors import ConfigError
from movierec.files import write_json

from .checkpoints import (CheckpointError, RunDir, TrainState, load_model_weights, load_optimizer,
                          restore_config, save_optimizer, save_tensors)
from .curves import plot_curves
from .distributed import barrier, is_main

# Settings a resumed run may change: they extend, shorten or anneal training from where it
# stands, not what was trained up to there.
RESUMABLE_SETTINGS = frozenset({"epochs", "patience", "lr_decay", "lr_patience"})


def check_settings(config, choices: dict[str, tuple], positive: tuple[str, ...]) -> None:
    """The checks every training config needs: named choices, positive sizes and counts, a
    dropout rate, and the learning-rate schedule."""
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(config, name)!r}")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError("dropout must be in [0, 1)")
    if not 0.0 < config.lr_decay <= 1.0:
        raise ConfigError("lr_decay must be in (0, 1]")
    if config.lr_patience <= 0:
        raise ConfigError("lr_patience must be positive")
    if getattr(config, "hold_out_after", ""):
        from movierec.dataset.store import cut_time

        cut_time(config.hold_out_after)


def seed_everything(seed: int) -> None:
    import paddle

    random.seed(seed)
    np.random.seed(seed % (2**32))
    paddle.seed(seed)


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
            saved = json.loads(json.dumps(asdict(restore_config(type(config), run.read_config()))))
        except TypeError as exc:
            raise CheckpointError(f"{run.path} holds a run of another model ({exc})") from exc
        changed = sorted(k for k in set(saved) | set(config_dict)
                         if saved.get(k) != config_dict.get(k) and k not in RESUMABLE_SETTINGS)
        if changed:
            raise CheckpointError(f"{run.path} holds a run with other settings ({', '.join(changed)}); "
                                  "use a new --run-dir or pass --no-resume to start over")
        if is_main():
            write_json(run.config, config_dict)
        state = run.read_state()
        load_model_weights(model, run.last_model)
        load_optimizer(run.last_optimizer, model, optimizer)
    else:
        state = TrainState()
        if is_main():
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
                if is_main():
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
        if is_main():   # with several processes the weights are the same on each: one writes
            save_tensors(run.last_model, model.state_dict())
            save_optimizer(run.last_optimizer, model, optimizer)
            write_json(run.state, asdict(state))
            plot_curves(state.history, run.curves, config.monitor)
        if on_epoch is not None:
            on_epoch(state, record)
    return state




def train(run_dir: str | Path, model, optimizer, config, batch_losses: Callable[[np.random.Generator], Iterable],
          steps: int, validate: Callable[[], dict], progress=None, on_epoch=None) -> TrainState:
    """Train (or resume) a run: each epoch draws its batches from `batch_losses(rng)`, which
    yields (loss tensor, batch size), with rng seeded from (seed, epoch); `progress(steps, name)`
    may return a callable advanced once per batch. Returns with the best weights loaded."""
    run = RunDir(run_dir)

    def train_epoch(epoch: int) -> float:
        rng = np.random.default_rng([config.seed, epoch])
        return optimise_epoch(optimizer, batch_losses(rng), progress(steps, f"epoch {epoch}") if progress else None)

    state = fit(run, model, optimizer, config, train_epoch, validate, on_epoch)
    barrier()   # every process loads what the first has written
    load_model_weights(model, run.best_model if run.best_model.is_file() else run.last_model)
    model.eval()
    return state
