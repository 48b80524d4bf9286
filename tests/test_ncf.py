import json

import numpy as np
import paddle
import pytest
from typer.testing import CliRunner

from movierec.cli import app
from movierec.dataset.evaluation import build_task, evaluate, popularity_scorer
from movierec.dataset.sequences import Sequences, chronological, leave_last_out
from movierec.dataset.features import year_bucket
from movierec.dataset.readers import DataError
from movierec.dataset.posters import PosterVectors
from movierec.models.ncf.config import NCFConfig
from movierec.models.ncf.model import NCF, Features
from movierec.models.ncf.scorer import NCFScorer
from movierec.models.ncf.training import PairSampler, ncf_scorer_for_eval, train_ncf

runner = CliRunner()


@pytest.fixture(scope="module")
def ml100k(ml100k_dataset):
    sequences = chronological(ml100k_dataset.ratings, ml100k_dataset.num_users)
    split = leave_last_out(sequences)
    task = build_task(split, "valid", sequences, ml100k_dataset.num_items)
    rng = np.random.default_rng(0)
    with_poster = ml100k_dataset.items.raw_id.to_numpy()[::2]
    posters = PosterVectors(with_poster, rng.random((len(with_poster), 24)).astype(np.float32))
    return ml100k_dataset, split, task, posters


@pytest.mark.parametrize("flags", [dict(), dict(mlp=False), dict(side_features=False),
                                   dict(posters=False), dict(mlp=False, side_features=False, posters=False)])
def test_numpy_scorer_equals_the_paddle_model(ml100k, flags, tmp_path):
    dataset, _, _, posters = ml100k
    features = Features.from_dataset(dataset, posters)
    paddle.seed(1)
    model = NCF(features, NCFConfig(**flags))
    model.eval()
    users = np.array([1, 1, 5, 0, 943])  # 0: an unknown user with side features only
    items = np.array([1, 2, 3, 4, 1682])
    user_features = features.user_features[users]
    user_features[3] = [1, 2, 3, 4]
    expected = model(paddle.to_tensor(users), paddle.to_tensor(user_features), paddle.to_tensor(items)).numpy()
    scorer = model.export_scorer()
    got = np.array([scorer.score(u, f, np.array([i]))[0] for u, f, i in zip(users, user_features, items)])
    assert np.allclose(got, expected, atol=1e-5)
    batch = scorer.score(5, features.user_features[5], np.arange(1, 1683))
    single = model(paddle.to_tensor(np.full(1682, 5)), paddle.to_tensor(np.repeat(features.user_features[5:6], 1682, 0)),
                   paddle.to_tensor(np.arange(1, 1683))).numpy()
    assert np.allclose(batch, single, atol=1e-5)
    reloaded = NCFScorer.load(scorer.save(tmp_path / "scorer.npz"))
    assert np.array_equal(reloaded.score(5, features.user_features[5], items), scorer.score(5, features.user_features[5], items))


def test_features_poster_flags_and_year_buckets(ml100k):
    dataset, _, _, posters = ml100k
    features = Features.from_dataset(dataset, posters)
    assert features.has_poster[0] == 0 and features.has_poster[1:].sum() == len(posters.movie_id)
    norms = np.linalg.norm(features.posters[features.has_poster > 0], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)
    assert not features.posters[features.has_poster == 0].any()
    assert list(year_bucket(np.array([0, 1915, 1919, 1920, 1995, 2030]))) == [0, 1, 1, 2, 17, 20]


def test_pair_sampler_negatives_are_unseen_and_popularity_leans_popular():
    train = Sequences.from_lists([[], [1, 2, 3], [1, 2], [1], [4, 1]])
    rng = np.random.default_rng(0)
    for kind in ("uniform", "popularity"):
        sampler = PairSampler(train, num_items=50, sampler=kind)
        negatives = sampler.negatives(np.array([1, 2, 3, 4]), 500, rng)
        for row, user in enumerate([1, 2, 3, 4]):
            assert not np.isin(negatives[row], train.of(user)).any()
        assert negatives.min() >= 1 and negatives.max() <= 50
    uniform = PairSampler(train, 50, "uniform").negatives(np.array([3]), 5000, rng)
    popular = PairSampler(train, 50, "popularity").negatives(np.array([3]), 5000, rng)
    # only items 2-4 have interactions (besides the user's own item 1): popularity sampling keeps to them
    assert np.isin(popular, [2, 3, 4]).mean() == 1.0
    assert (popular == 2).mean() > (popular == 3).mean()
    assert np.isin(uniform, [2, 3, 4]).mean() < 0.1
    everything = PairSampler(Sequences.from_lists([[], [1, 2]]), num_items=2, sampler="uniform")
    with pytest.raises(DataError, match="every item"):
        everything.negatives(np.array([1]), 1, rng)


def test_config_validation():
    with pytest.raises(ValueError, match="loss"):
        NCFConfig(loss="mse")
    with pytest.raises(ValueError, match="sampler"):
        NCFConfig(sampler="zipf")
    with pytest.raises(ValueError, match="two or more"):
        NCFConfig(mlp_layers=(64,))


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_side_feature_ncf_beats_gmf_only_and_popularity(ml100k, tmp_path, loss):
    """Sampled HR@10 on ML-100K validation at the same budget: fails if training stops learning."""
    dataset, split, task, _ = ml100k
    features = Features.from_dataset(dataset)
    budget = dict(epochs=8, patience=8, loss=loss, seed=42)
    full, _ = train_ncf(split.train, features, NCFConfig(posters=False, **budget), tmp_path / "full", task)
    gmf, _ = train_ncf(split.train, features, NCFConfig(posters=False, mlp=False, side_features=False, **budget),
                       tmp_path / "gmf", task)
    hr = {name: evaluate(ncf_scorer_for_eval(m.export_scorer(), features), task)["sampled"]["HR@10"]
          for name, m in (("full", full), ("gmf", gmf))}
    popularity = evaluate(popularity_scorer(split.train, dataset.num_items), task)["sampled"]["HR@10"]
    assert hr["full"] > popularity + 0.1
    assert hr["full"] > hr["gmf"]


def test_train_ncf_with_posters_end_to_end_from_the_cli(ml100k, tmp_path):
    dataset, _, _, posters = ml100k
    poster_file = tmp_path / "posters.npz"
    posters.save(poster_file)
    run_dir = tmp_path / "run"
    args = ["train", "ncf", "--data", str(dataset.path), "--run-dir", str(run_dir), "--posters", str(poster_file),
            "--epochs", "1", "--sampler", "popularity"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "posters for 841 movies" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["posters"] and metrics["epochs_run"] == 1
    assert set(metrics["test"]) == {"NCF", "popularity"}
    result = runner.invoke(app, ["eval", "--model", "ncf", "--data", str(dataset.path), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "NCF" in result.output
    result = runner.invoke(app, ["eval", "--model", "ncf", "--data", str(dataset.path), "--run-dir", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no NCF run" in result.output
