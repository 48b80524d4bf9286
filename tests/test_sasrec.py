import json

import numpy as np
import paddle
import pytest

from movierec.dataset.evaluation import build_task, evaluate, popularity_scorer
from movierec.dataset.sequences import Sequences, chronological, leave_last_out
from movierec.models.sasrec.config import SASRecConfig
from movierec.models.sasrec.model import SASRec, pad_left
from movierec.models.sasrec.training import TrainingBatches, batch_loss, load_sasrec, train_sasrec
from movierec.training.checkpoints import CheckpointError, RunDir, load_tensors

TINY = dict(maxlen=12, hidden=16, blocks=2, heads=2, dropout=0.0, batch_size=8)


def model(num_items=40, **overrides):
    paddle.seed(0)
    return SASRec(num_items, SASRecConfig(**{**TINY, **overrides}))


def test_states_are_causal():
    m = model()
    m.eval()
    a = np.array([[0, 0, 3, 7, 9, 11, 2, 5, 8, 1, 4, 6]])
    b = a.copy()
    b[0, -1] = 30  # change only the last item
    sa, sb = m(paddle.to_tensor(a)).numpy(), m(paddle.to_tensor(b)).numpy()
    assert np.allclose(sa[0, :-1], sb[0, :-1], atol=1e-6)
    assert not np.allclose(sa[0, -1], sb[0, -1], atol=1e-4)


def test_padding_width_does_not_change_states():
    m = model()
    m.eval()
    seqs = [np.array([3, 4, 5]), np.array([1, 2, 3, 4, 5, 6, 7])]
    wide = m(paddle.to_tensor(pad_left(seqs, 12)))[:, -1].numpy()
    narrow = m(paddle.to_tensor(pad_left(seqs, 7)))[:, -1].numpy()
    assert np.allclose(wide, narrow, atol=1e-5)


def test_user_vectors_batched_equal_one_by_one_and_match_scores():
    m = model()
    seqs = [np.arange(1, n + 2) % 40 + 1 for n in range(9)] + [np.arange(1, 30)]  # last one > maxlen
    batched = m.user_vectors(seqs, batch_size=4)
    single = np.vstack([m.user_vectors([s]) for s in seqs])
    assert batched.shape == (10, 16)
    assert np.allclose(batched, single, atol=1e-5)
    # longer than maxlen: only the most recent maxlen items count
    assert np.allclose(m.user_vectors([np.arange(1, 30)]), m.user_vectors([np.arange(17, 30)]), atol=1e-5)
    scores = m.scorer()(np.arange(10), seqs)
    assert np.allclose(scores, batched @ m.item_vectors().T, atol=1e-4)


def test_training_batches_shift_targets_and_avoid_seen_negatives():
    train = Sequences.from_lists([[], [1, 2, 3, 4], [5, 6], [7]])
    batches = TrainingBatches(train, num_items=9, maxlen=5)
    assert list(batches.users) == [1, 2]  # user 3 has nothing to predict
    assert list(batches.inputs[0]) == [0, 0, 1, 2, 3] and list(batches.targets[0]) == [0, 0, 2, 3, 4]
    rng = np.random.default_rng(0)
    negatives = batches.negatives(np.array([1, 2]), (2, 200), rng)
    assert not np.isin(negatives[0], [1, 2, 3, 4]).any()
    assert not np.isin(negatives[1], [5, 6]).any()
    widths = [inputs.shape[1] for _, inputs, _ in batches.epoch(1, rng)]
    assert sorted(widths) == [1, 3]  # each batch trimmed to its longest user


def test_random_windows_cover_long_histories():
    train = Sequences.from_lists([[], list(range(1, 31)), [5, 6, 7]])
    batches = TrainingBatches(train, num_items=40, maxlen=5, window="random")
    rng = np.random.default_rng(0)
    seen_targets = set()
    for _ in range(40):
        for users, inputs, targets in batches.epoch(8, rng):
            row = list(users).index(1)
            assert inputs.shape[1] == 5 and list(targets[row]) == [i + 1 for i in inputs[row]]
            seen_targets.update(targets[row].tolist())
            assert list(targets[list(users).index(2)][-2:]) == [6, 7]
    assert seen_targets == set(range(2, 31))  # every transition of the long history is trained on
    assert list(TrainingBatches(train, 40, 5).targets[0]) == [26, 27, 28, 29, 30]


@pytest.mark.parametrize("loss", ["bce", "ce", "sampled-ce"])
def test_every_loss_gives_gradients(loss):
    m = model(loss=loss, num_negatives=8)
    train = Sequences.from_lists([[], list(range(1, 11)), list(range(5, 20))])
    batches = TrainingBatches(train, 40, 12)
    users, inputs, targets = next(batches.epoch(8, np.random.default_rng(0)))
    value = batch_loss(m, m.config, batches, users, inputs, targets, np.random.default_rng(0))
    value.backward()
    assert np.isfinite(float(value)) and float(value) > 0
    assert float(m.item_emb.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("loss", ["bce", "ce", "sampled-ce"])
def test_position_weighting_scales_each_batch_by_its_share_of_positions(loss):
    m = model(loss=loss, num_negatives=8, batch_size=2, weighting="batch")
    m.eval()  # no dropout: both weightings see the same forward pass
    train = Sequences.from_lists([[], list(range(1, 4)), list(range(1, 6)), list(range(5, 20)), list(range(2, 30))])
    batches = TrainingBatches(train, 40, 12)
    assert batches.positions_per_batch(2) == pytest.approx((2 + 4 + 12 + 12) / 2)
    for users, inputs, targets in batches.epoch(2, np.random.default_rng(0)):
        mean = batch_loss(m, m.config, batches, users, inputs, targets, np.random.default_rng(1))
        by_position = batch_loss(m, SASRecConfig(**{**TINY, "loss": loss, "num_negatives": 8,
                                                                 "batch_size": 2, "weighting": "position"}),
                                 batches, users, inputs, targets, np.random.default_rng(1))
        share = (targets != 0).sum() / batches.positions_per_batch(2)
        assert float(by_position) == pytest.approx(float(mean) * share, rel=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="mse")
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(hidden=50, heads=3)
    with pytest.raises(ValueError, match="weighting"):
        SASRecConfig(weighting="user")


@pytest.fixture(scope="module")
def ml100k_split(ml100k_dataset):
    sequences = chronological(ml100k_dataset.ratings, ml100k_dataset.num_users)
    split = leave_last_out(sequences)
    return ml100k_dataset, sequences, split, build_task(split, "valid", sequences, ml100k_dataset.num_items)


def _small_config(**overrides):
    return SASRecConfig(**{**dict(maxlen=50, hidden=32, epochs=2, eval_every=1, patience=5,
                                  loss="ce", seed=7), **overrides})


def test_same_seed_same_weights_and_resume_equals_uninterrupted(ml100k_split, tmp_path):
    dataset, _, split, task = ml100k_split
    config = _small_config()
    train_sasrec(split.train, dataset.num_items, config, tmp_path / "a", task)
    train_sasrec(split.train, dataset.num_items, config, tmp_path / "b", task)
    one = _small_config(epochs=1)
    train_sasrec(split.train, dataset.num_items, one, tmp_path / "c", task)
    assert RunDir(tmp_path / "c").read_state().epoch == 1
    train_sasrec(split.train, dataset.num_items, config, tmp_path / "c", task)
    a, b, c = (load_tensors(RunDir(tmp_path / n).last_model) for n in "abc")
    for name in a:
        assert np.array_equal(a[name], b[name]), name
        assert np.allclose(a[name], c[name], atol=1e-6), name
    assert RunDir(tmp_path / "c").read_state().epoch == 2


def test_resume_refuses_other_settings(ml100k_split, tmp_path):
    dataset, _, split, task = ml100k_split
    train_sasrec(split.train, dataset.num_items, _small_config(epochs=1), tmp_path / "r", task)
    with pytest.raises(CheckpointError, match="hidden"):
        train_sasrec(split.train, dataset.num_items, _small_config(epochs=1, hidden=16), tmp_path / "r", task)
    # a run saved before `weighting` existed trained with per-batch means: it resumes only as such
    config_file = tmp_path / "r" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["weighting"]
    config_file.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="weighting"):
        train_sasrec(split.train, dataset.num_items, _small_config(epochs=2), tmp_path / "r", task)
    train_sasrec(split.train, dataset.num_items, _small_config(epochs=2, weighting="batch"), tmp_path / "r", task)
    assert load_sasrec(tmp_path / "r", dataset.num_items).config.weighting == "batch"


def test_sasrec_learns_and_beats_popularity_under_both_protocols(ml100k_split, tmp_path):
    """Fails if training stops learning: trained SASRec vs the popularity baseline on
    ML-100K validation, NDCG@10 under the sampled and the full-ranking protocol."""
    dataset, _, split, task = ml100k_split
    config = SASRecConfig(loss="ce", epochs=20, eval_every=5, patience=10, seed=42)
    trained, state = train_sasrec(split.train, dataset.num_items, config, tmp_path / "run", task)
    model_metrics = evaluate(trained.scorer(), task)
    baseline = evaluate(popularity_scorer(split.train, dataset.num_items), task)
    assert model_metrics["sampled"]["NDCG@10"] > baseline["sampled"]["NDCG@10"]
    assert model_metrics["full"]["NDCG@10"] > baseline["full"]["NDCG@10"]
    losses = [h["loss"] for h in state.history]
    assert losses[-1] < losses[0]
    # the saved best checkpoint reloads to the same scores
    reloaded = load_sasrec(tmp_path / "run", dataset.num_items)
    assert evaluate(reloaded.scorer(), task) == model_metrics
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("heads,blocks", [(1, 2), (2, 2), (1, 1), (2, 3)])
def test_numpy_inference_equals_the_paddle_forward(heads, blocks):
    from movierec.models.sasrec.inference import SASRecInference

    m = model(num_items=300, heads=heads, blocks=blocks, maxlen=12)
    m.eval()
    inference = SASRecInference.from_model(m)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 301, size=n) for n in (1, 5, 11, 12, 30)]
    expected = m.user_vectors(sequences)
    got = np.stack([inference.user_vector(s) for s in sequences])
    assert np.allclose(got, expected, atol=1e-5)
    assert inference.user_vector(np.zeros(0, dtype=np.int64)) is None
