"""The shared training loop: reduce-on-plateau learning rate, kept across a resume."""
from dataclasses import dataclass

import numpy as np
import paddle
import pytest

from movierec.training.checkpoints import CheckpointError, RunDir, load_tensors
from movierec.training.loop import fit

# validation metric per epoch: best at 1, flat at 2-3, best at 4, flat at 5-6
SCRIPT = [0.5, 0.4, 0.4, 0.6, 0.3, 0.3]


@dataclass
class TinyConfig:
    lr: float = 0.1
    epochs: int = 6
    patience: int = 10
    lr_decay: float = 0.5
    lr_patience: int = 2
    eval_every: int = 1
    monitor: str = "full.NDCG@10"
    seed: int = 0


def run_fit(path, config: TinyConfig, metrics=SCRIPT):
    """Fit a linear layer for `config.epochs`; validation returns `metrics` in turn."""
    paddle.seed(0)
    layer = paddle.nn.Linear(3, 1)
    optimizer = paddle.optimizer.Adam(learning_rate=config.lr, parameters=layer.parameters())
    x = paddle.to_tensor(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    y = paddle.to_tensor(np.ones((4, 1), dtype="float32"))

    def train_epoch(epoch):
        loss = ((layer(x) - y) ** 2).mean()
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    scripted = iter(metrics)

    def validate():
        return {"full": {"NDCG@10": next(scripted)}}

    state = fit(RunDir(path), layer, optimizer, config, train_epoch, validate)
    return state, optimizer


def test_learning_rate_decays_after_plateaus_and_resets_on_improvement(tmp_path):
    state, optimizer = run_fit(tmp_path / "run", TinyConfig())
    assert [h["lr"] for h in state.history] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    assert state.lr == pytest.approx(0.025) and optimizer.get_lr() == pytest.approx(0.025)
    assert state.best_epoch == 4


def test_constant_learning_rate_without_decay(tmp_path):
    state, _ = run_fit(tmp_path / "run", TinyConfig(lr_decay=1.0))
    assert [h["lr"] for h in state.history] == pytest.approx([0.1] * 6)


def test_resume_continues_with_the_decayed_rate(tmp_path):
    run_fit(tmp_path / "whole", TinyConfig())
    run_fit(tmp_path / "split", TinyConfig(epochs=3), SCRIPT[:3])
    state, _ = run_fit(tmp_path / "split", TinyConfig(), SCRIPT[3:])
    assert [h["lr"] for h in state.history] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    whole, split = (load_tensors(RunDir(tmp_path / n).last_model) for n in ("whole", "split"))
    for name in whole:
        assert np.allclose(whole[name], split[name], atol=1e-6), name


def test_resume_may_change_the_schedule_but_not_the_rate(tmp_path):
    run_fit(tmp_path / "run", TinyConfig(epochs=2, lr_decay=1.0))
    state, _ = run_fit(tmp_path / "run", TinyConfig(epochs=3, lr_decay=0.5, lr_patience=1), SCRIPT[2:])
    assert state.history[-1]["lr"] == pytest.approx(0.1) and state.lr == pytest.approx(0.05)
    with pytest.raises(CheckpointError, match="lr"):
        run_fit(tmp_path / "run", TinyConfig(epochs=4, lr=0.2))
