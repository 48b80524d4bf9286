"""Rankers trained on recall's candidates: training data without leakage, a planted signal
learned, export parity, the build's choice and serving consistency."""

from __future__ import annotations

import dataclasses
import json

import lightgbm
import numpy as np
import paddle
import pytest
from typer.testing import CliRunner

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.cli import app
from movierec.dataset.sequences import chronological, leave_last_out
from movierec.errors import ConfigError
from movierec.models.ranker.config import RankerConfig
from movierec.client.quality import QualityConfig, served_quality, served_validation
from movierec.models.ranker.data import (bundle_item_histories, candidate_lists, check_no_leakage, list_metrics,
                                         user_folds)
from movierec.rank.features import FeatureSpec, ItemTable, RankFeatures
from movierec.server.pipeline import Pipeline, RecommendInput


@pytest.fixture(scope="module")
def validation_root(ml100k_dataset, trained_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("valid") / "bundles"
    build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, hold_out_last=2))
    return root


@pytest.fixture(scope="module")
def lists(validation_root):
    bundle = load_bundle(validation_root, with_rankings=False)
    table = ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder, None, None)
    spec = FeatureSpec(bundle.recaller.names, ("recall", "popularity", "side", "history"),
                       len(bundle.encoder.genres), 0)
    return bundle, spec, candidate_lists(bundle, RankFeatures(spec, table), pool_sample=50)


def test_the_recall_models_behind_an_example_never_saw_its_label(lists, ml100k_dataset, bundle_root):
    bundle, _, data = lists
    runs_train = leave_last_out(chronological(ml100k_dataset.ratings, ml100k_dataset.num_users)).train
    targets = data.items[data.labels]
    owners = np.repeat(np.arange(len(data)), np.diff(data.indptr))[data.labels]
    assert len(targets) > 0.5 * len(data)
    for target, list_index in zip(targets, owners):
        user = int(data.users[list_index])
        assert target not in bundle.histories.of(user)   # the bundle's channels and item2item never held it
        assert target not in runs_train.of(user)         # the trained runs never saw it
    check_no_leakage(bundle)
    with pytest.raises(ConfigError, match="holds every rating"):
        check_no_leakage(load_bundle(bundle_root, with_rankings=False))
    leaky = dataclasses.replace(bundle, manifest={**bundle.manifest, "split": {"hold_out_last": 3}})
    with pytest.raises(ConfigError, match="saw the label"):
        check_no_leakage(leaky)


def _planted(data, spec, rng):
    """The same lists, labelled by a hidden item attribute written into the `year` column: the
    candidate with the highest value is the positive."""
    column = spec.names().index("year")
    hidden = rng.random(data.items.max() + 1).astype(np.float32)
    data = dataclasses.replace(data, features=data.features.copy(), labels=np.zeros(len(data.items), bool))
    data.features[:, column] = hidden[data.items]
    for start, end in zip(data.indptr[:-1], data.indptr[1:]):
        data.labels[start + int(np.argmax(hidden[data.items[start:end]]))] = True
    return data


@pytest.mark.parametrize("model", ["lgbm", "ncf", "din"])
def test_a_ranker_learns_a_planted_signal_and_beats_the_recall_order(lists, trained_runs, ml100k_dataset,
                                                                     tmp_path, model):
    bundle, spec, data = lists
    planted = _planted(data, spec, np.random.default_rng(0))
    in_validation = user_folds(planted.users, 0, 5) == 0
    train, valid = planted.subset(np.flatnonzero(~in_validation)), planted.subset(np.flatnonzero(in_validation))
    # DIN starts from scratch (the NCF ranker from the NCF run): a larger step for the few batches here
    config = RankerConfig(model=model, bundles=tmp_path, run_dir=tmp_path, epochs=4, trees=60,
                          lr=3e-3 if model == "din" else 1e-3)
    if model == "lgbm":
        from movierec.models.ranker.lgbm import fit_lgbm

        logits = fit_lgbm(train, valid, spec, config, tmp_path, say=lambda _: None).predict(valid.features)
    else:
        from movierec.models.ranker.din import DIN, fit_din, sasrec_item_embeddings
        from movierec.models.ranker.listwise import lists_logits
        from movierec.models.ranker.ncf_list import CandidateNCF, fit_ncf_list

        if model == "din":
            embeddings = sasrec_item_embeddings(trained_runs[0], ml100k_dataset.num_items)
            model_type, scorer = DIN, fit_din(train, valid, spec, config, embeddings, tmp_path, say=lambda _: None)
        else:
            model_type, scorer = CandidateNCF, fit_ncf_list(train, valid, spec, config, trained_runs[1],
                                                            ml100k_dataset, tmp_path, say=lambda _: None)
        logits = lists_logits(model_type, scorer, valid)
    learned = list_metrics(valid, logits, recalled_only=False)["NDCG@10"]
    recall_order = list_metrics(valid, valid.baseline, recalled_only=False)["NDCG@10"]
    assert learned > 0.6 and learned > recall_order + 0.4


def _randomise(model, rng):
    for p in model.parameters():
        p.set_value(rng.normal(scale=0.3, size=p.shape).astype(np.float32))
    model.eval()


def test_the_numpy_scorer_equals_the_paddle_model(trained_runs, ml100k_dataset):
    from movierec.models.ncf.training import load_ncf, read_ncf_config, run_features
    from movierec.models.ranker.ncf_list import CandidateNCF

    features = run_features(ml100k_dataset, trained_runs[1], read_ncf_config(trained_runs[1]))
    rng = np.random.default_rng(1)
    columns, mean, scale = np.array([0, 2, 3, 5, 6, 8, 9]), rng.normal(size=7), rng.random(7) + 0.5
    model = CandidateNCF(load_ncf(trained_runs[1], features), columns, mean, scale)
    for p in model.dense.parameters():
        p.set_value(rng.normal(size=p.shape).astype(np.float32))
    model.eval()
    scorer = model.export()
    items = rng.integers(1, ml100k_dataset.num_items + 1, 300)
    matrix = rng.normal(size=(300, 10)).astype(np.float32)
    dense = ((matrix[:, columns] - mean) * scale).astype(np.float32)
    for user in (0, 1, 500):
        codes = features.user_features[user] if user else np.array([1, 2, 3, 0])
        with paddle.no_grad():
            expected = model(paddle.to_tensor(np.full(300, user)), paddle.to_tensor(np.tile(codes, (300, 1))),
                             paddle.to_tensor(items), paddle.to_tensor(dense)).numpy()
        np.testing.assert_allclose(scorer.score(user, codes, items, matrix), expected, atol=1e-5, rtol=1e-5)


def test_the_din_numpy_scorer_equals_the_paddle_model(trained_runs, ml100k_dataset):
    from movierec.models.ranker.din import DIN, sasrec_item_embeddings

    rng = np.random.default_rng(2)
    embeddings = sasrec_item_embeddings(trained_runs[0], ml100k_dataset.num_items)
    columns = np.array([0, 1, 3, 4, 7])
    mean, scale = rng.normal(size=5).astype(np.float32), (rng.random(5) + 0.5).astype(np.float32)
    for units in (16, 6):   # the default width of the activation unit, and another
        model = DIN(embeddings, 20, units, columns, mean, scale)
        _randomise(model, rng)
        scorer = model.export()
        assert scorer.history_maps.shape[2] == units
        items = rng.integers(1, ml100k_dataset.num_items + 1, 300)
        matrix = rng.normal(size=(300, 9)).astype(np.float32)
        dense = ((matrix[:, columns] - mean) * scale).astype(np.float32)
        scores = {}
        for length in (0, 1, 7, 20, 35):   # no history, short, full, longer than the model reads
            sequence = rng.integers(1, ml100k_dataset.num_items + 1, length)
            padded = np.zeros(20, np.int64)
            kept = sequence[-20:]
            padded[20 - len(kept):] = kept
            with paddle.no_grad():
                expected = model(paddle.to_tensor(items[None]), paddle.to_tensor(padded[None]),
                                 paddle.to_tensor(dense[None])).numpy()[0]
            scores[length] = scorer.score(sequence, items, matrix)
            np.testing.assert_allclose(scores[length], expected, atol=1e-5, rtol=1e-5)
        if units == 16:
            assert np.abs(scores[0] - scores[20]).max() > 1e-2   # the history moves the scores


def test_the_served_rankers_score_as_their_scorers_do_on_the_whole_feature_matrix(lists, validation_root,
                                                                                   trained_runs, ml100k_dataset):
    """DIN and NCF over candidates serve from item-only and request-only parts computed apart
    (`ProjectedFeatures`): the same logits as the scorers over the full feature matrix, for
    known and new users, the slots' pools, and after the catalogue grows."""
    from movierec.models.ncf.training import exported_scorer, load_ncf, read_ncf_config, run_features
    from movierec.models.ranker.din import DIN, sasrec_item_embeddings
    from movierec.models.ranker.listwise import dense_columns
    from movierec.models.ranker.ncf_list import CandidateNCF
    from movierec.rank.rankers.din import DINRanker
    from movierec.rank.rankers.ncf_list import CandidateNCFRanker
    from movierec.recall.component import AddedItems

    _, spec, _ = lists
    bundle = load_bundle(validation_root, with_rankings=False)   # its channels grow below
    rng = np.random.default_rng(3)
    spec = dataclasses.replace(spec, groups=(*spec.groups, "ncf", "list"))
    table = ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder, None, None)
    columns = dense_columns(spec)
    mean, scale = rng.normal(size=len(columns)).astype(np.float32), (rng.random(len(columns)) + 0.5).astype(np.float32)
    din = DIN(sasrec_item_embeddings(trained_runs[0], ml100k_dataset.num_items), 20, 16, columns, mean, scale)
    _randomise(din, rng)
    ncf_run = load_ncf(trained_runs[1], run_features(ml100k_dataset, trained_runs[1], read_ncf_config(trained_runs[1])))
    ncf_list = CandidateNCF(ncf_run, columns, mean, scale)
    for p in ncf_list.dense.parameters():
        p.set_value(rng.normal(size=p.shape).astype(np.float32))
    ncf_list.eval()
    ncf = exported_scorer(ml100k_dataset, trained_runs[1])[0]
    rankers = [DINRanker(RankFeatures(spec, table, ncf), din.export(), {}),
               CandidateNCFRanker(RankFeatures(spec, table, ncf), ncf_list.export(), {})]

    def expect_equal(ranker, context, merged):
        matrix = ranker.features.matrix(context, merged)
        whole = (ranker.model.score(context.sequence, merged.items, matrix) if ranker.name == "din" else
                 ranker.model.score(context.user, context.user_features, merged.items, matrix))
        np.testing.assert_allclose(ranker.score(context, merged), whole, atol=1e-4, rtol=1e-5)

    new_user = bundle.context(0, bundle.encoder.encode_request("F", 30, "writer", "10001"))
    for ranker in rankers:
        for context in (bundle.context(1), bundle.context(500), new_user):
            merged, _ = bundle.recaller.recall(context)
            expect_equal(ranker, context, merged)
            expect_equal(ranker, context, bundle.recaller.score_items(context, bundle.popular[:200], ranker.signals))
    genres = np.zeros((2, len(bundle.encoder.genres)), np.float32)
    genres[:, 0] = 1
    added = AddedItems(np.arange(bundle.num_items + 1, bundle.num_items + 3), np.array([2001, 0]), genres, None, None)
    for component in (*bundle.recaller.channels, *rankers):
        component.grow(added)
    context = bundle.context(1, num_items=bundle.num_items + 2)
    items = np.r_[bundle.popular[:50], added.ids]
    for ranker in rankers:
        expect_equal(ranker, context, bundle.recaller.score_items(context, items, ranker.signals))


def test_the_list_shares_are_each_models_softmax_over_the_candidates_it_scored(lists, trained_runs, ml100k_dataset):
    from movierec.models.ncf.training import exported_scorer

    bundle, spec, _ = lists
    spec = dataclasses.replace(spec, groups=(*spec.groups, "ncf", "list"))
    features = RankFeatures(spec, ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder, None,
                                                  None), exported_scorer(ml100k_dataset, trained_runs[1])[0])
    names = spec.names()
    context = bundle.context(7)
    recalled = bundle.recaller.recall(context)[0]
    for merged in (recalled, bundle.recaller.score_items(context, bundle.popular[:100])):
        matrix = features.matrix(context, merged)
        for column, channel in enumerate(merged.channels):
            scores = merged.scores[:, column].astype(np.float64)
            scored = ~np.isnan(scores)
            expected = np.zeros(len(scores))
            expected[scored] = np.exp(scores[scored] - scores[scored].max())
            expected /= max(expected.sum(), 1e-30)
            np.testing.assert_allclose(matrix[:, names.index(f"{channel}_share")], expected, atol=1e-6)
        logits = matrix[:, names.index("ncf_logit")].astype(np.float64)
        np.testing.assert_allclose(matrix[:, names.index("ncf_logit_share")],
                                   np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), atol=1e-6)
        assert np.isfinite(matrix).all()
    # a channel that proposed only some candidates shares among those it scored
    assert (np.isnan(recalled.scores).any(axis=0)).any()


def test_a_cascade_ranks_the_head_of_the_recall_order_as_it_trained_and_keeps_that_order_below(lists):
    """With a head of K (`train ranker --head`), a ranker scores only the K candidates SASRec
    scores highest, on their own features (as the training lists hold them); the rest follow
    below them in SASRec's order. A new user, whom SASRec does not score, is ranked whole."""
    from movierec.rank.learned import LearnedRanker
    from movierec.rank.ranker import pool_signals, rank

    bundle, spec, _ = lists
    features = RankFeatures(spec, ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder,
                                                  None, None))
    column = spec.names().index("sasrec_score")

    class Reversed(LearnedRanker):   # the opposite of SASRec's order, so that the head shows
        name = "reversed"

        def logits(self, matrix, context, merged):
            return -matrix[:, column]

    whole, cascaded = Reversed(features, None, {}), Reversed(features, None, {}, head=20)
    sasrec = bundle.recaller.names.index("sasrec")
    for user in (1, 300, 943):
        context = bundle.context(user)
        merged, _ = bundle.recaller.recall(context)
        assert len(merged.items) > 100
        recall_order = merged.items[np.argsort(-np.nan_to_num(merged.scores[:, sasrec], nan=-np.inf), kind="stable")]
        served = rank(cascaded, context, bundle.recaller, merged).items
        assert served[:20].tolist() == recall_order[:20][::-1].tolist()
        assert served[20:].tolist() == recall_order[20:].tolist()
        assert np.all(np.diff(rank(cascaded, context, bundle.recaller, merged).scores) <= 0)
        assert rank(whole, context, bundle.recaller, merged).items[:20].tolist() != served[:20].tolist()
        every_candidate = Reversed(features, None, {}, head=len(merged.items))
        assert rank(every_candidate, context, bundle.recaller, merged).items.tolist() == \
            rank(whole, context, bundle.recaller, merged).items.tolist()
    new_user = bundle.context(0, bundle.encoder.encode_request("F", 30, "writer", "10001"))
    pool = bundle.recaller.score_items(new_user, bundle.popular[:200], None)
    np.testing.assert_array_equal(cascaded.score(new_user, pool), whole.score(new_user, pool))
    np.testing.assert_array_equal(pool_signals(cascaded, new_user, bundle.recaller, bundle.popular[:200]).scores,
                                  pool.scores)   # no head: every channel scores the whole pool

    # a slot's pool: the channels other than SASRec score only the head, the same logits come out
    for user in (1, 300):
        context = bundle.context(user)
        items = bundle.popular[:400][context.allowed.array[bundle.popular[:400]]]
        every = bundle.recaller.score_items(context, items, None)
        signals = pool_signals(cascaded, context, bundle.recaller, items)
        np.testing.assert_array_equal(cascaded.score(context, signals), cascaded.score(context, every))
        others = [j for j, name in enumerate(every.channels) if name != "sasrec"]
        scored = ~np.isnan(signals.scores[:, others]).all(axis=1)
        assert scored.sum() == 20 and (~np.isnan(every.scores[:, others]).all(axis=1)).sum() > 100
        assert pool_signals(whole, context, bundle.recaller, items).scores.tobytes() == every.scores.tobytes()

    # the training lists hold the same head, each candidate's features computed over the head alone
    headed = candidate_lists(bundle, features, pool_sample=0, head=20)
    for i, user in enumerate(headed.users[:50]):
        context = bundle.context(int(user))
        merged, _ = bundle.recaller.recall(context)
        rows = np.arange(headed.indptr[i], headed.indptr[i + 1])
        rows = rows[headed.merged[rows]]   # the target, where a slot's pool holds it, follows as a pool row
        recall_order = np.argsort(-np.nan_to_num(merged.scores[:, sasrec], nan=-np.inf), kind="stable")
        head = merged.subset(np.sort(recall_order[:20]))
        assert headed.items[rows].tolist() == head.items.tolist()
        np.testing.assert_array_equal(headed.features[rows], features.matrix(context, head))


def test_a_ranker_that_scores_the_head_reads_every_channel_on_each_head_candidate(lists):
    """With `--scores-head`, each channel the ranker reads scores every candidate of the head,
    the ones it did not propose included (their ranks stay -1); the candidates below the head,
    and a ranker without it, see what recall handed over. The training lists hold the same."""
    from movierec.rank.learned import LearnedRanker
    from movierec.rank.ranker import head_rows, rank, score_head

    bundle, spec, _ = lists
    features = RankFeatures(spec, ItemTable.build(bundle.items, bundle_item_histories(bundle), bundle.encoder,
                                                  None, None))
    ncf = bundle.recaller.names.index("ncf")
    column = spec.names().index("ncf_score")

    class ByNCF(LearnedRanker):   # orders by a channel that proposes few of SASRec's head
        name = "by-ncf"

        def logits(self, matrix, context, merged):
            return matrix[:, column]

    plain, scoring = ByNCF(features, None, {}, head=20), ByNCF(features, None, {}, head=20, scores_head=True)
    filled_some = False
    for user in (1, 300, 943):
        context = bundle.context(user)
        merged, _ = bundle.recaller.recall(context)
        assert score_head(plain, context, bundle.recaller, merged) is merged
        head = head_rows(merged, 20)
        scored = score_head(scoring, context, bundle.recaller, merged)
        assert not np.isnan(scored.scores[head][:, [0, ncf]]).any()   # (a poster channel scores no movie without one)
        below = np.setdiff1d(np.arange(len(merged.items)), head)
        assert scored.scores[below].tobytes() == merged.scores[below].tobytes()
        np.testing.assert_array_equal(scored.ranks, merged.ranks)
        for j, channel in enumerate(bundle.recaller.channels):
            proposed = ~np.isnan(merged.scores[head, j])
            np.testing.assert_array_equal(scored.scores[head, j][proposed], merged.scores[head, j][proposed])
            np.testing.assert_allclose(scored.scores[head, j][~proposed],
                                       channel.score(context, merged.items[head][~proposed]),
                                       rtol=1e-5, atol=1e-7, equal_nan=True)
        filled_some |= bool(np.isnan(merged.scores[head, ncf]).any())
        by_ncf = merged.items[head][np.argsort(-scored.scores[head, ncf], kind="stable")]
        assert rank(scoring, context, bundle.recaller, merged).items[:20].tolist() == by_ncf.tolist()
    assert filled_some   # NCF proposed only some of SASRec's head: the others were scored for the ranker

    headed = candidate_lists(bundle, features, pool_sample=0, head=20, scores_head=True)
    for i, user in enumerate(headed.users[:30]):
        context = bundle.context(int(user))
        merged, _ = bundle.recaller.recall(context)
        rows = np.arange(headed.indptr[i], headed.indptr[i + 1])
        rows = rows[headed.merged[rows]]
        head = score_head(scoring, context, bundle.recaller, merged).subset(head_rows(merged, 20))
        assert headed.items[rows].tolist() == head.items.tolist()
        np.testing.assert_allclose(headed.features[rows], features.matrix(context, head), rtol=1e-6, atol=1e-6)


def test_train_ranker_then_build_serves_the_winner_online_as_precomputed(validation_root, ml100k_dataset,
                                                                        trained_runs, tmp_path, monkeypatch):
    from movierec.models.ranker import train as training

    fits = []   # (users trained on, users stopped early on) of each model the run trains

    def recording(*args):
        fit = make_fitter(*args)

        def recorded(train, stop_on, model_dir):
            fits.append((set(train.users.tolist()), set(stop_on.users.tolist())))
            return fit(train, stop_on, model_dir)
        return recorded

    make_fitter = training._fitter
    monkeypatch.setattr(training, "_fitter", recording)
    runner = CliRunner()
    run = tmp_path / "ranker-lgbm"
    result = runner.invoke(app, ["train", "ranker", "--model", "lgbm", "--bundles", str(validation_root),
                                 "--run-dir", str(run), "--trees", "40", "--pool-sample", "30", "--head", "100",
                                 "--scores-head"])
    assert result.exit_code == 0, result.output
    validation = json.loads((run / "validation.json").read_text())
    assert validation["users"] > 100 and 0 <= validation["NDCG@10"] <= 1
    # the served lists of the validating users, as the bundle serves them, are those `eval` scores
    bundle = load_bundle(validation_root, with_rankings=False)
    lists = candidate_lists(bundle, RankFeatures(FeatureSpec(bundle.recaller.names, ("recall",), 0, 0),
                                                 ItemTable.build(bundle.items, bundle_item_histories(bundle),
                                                                 bundle.encoder, None, None)), pool_sample=0)
    # cross-fitted: every user is validated, each fold by a model trained on the others, and
    # only the served model (the first fold's) stays in the run
    folds = user_folds(lists.users, RankerConfig().seed, 5)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4] and 0.1 < (folds == 0).mean() < 0.3
    assert validation["users"] == validation["served"]["users"] == validation["recall order"]["served"]["users"] \
        == len(lists.users)
    assert validation["validated folds"] == 5 and (run / "model.txt").is_file() and not (run / "folds").exists()
    # each model trained on the other folds' users only, and stopped early on the next fold's,
    # never on the fold it scores
    assert len(fits) == 5
    for fold, (trained, stopped) in enumerate(fits):
        own = set(lists.users[folds == fold].tolist())
        stopping = set(lists.users[folds == (fold + 1) % 5].tolist())
        assert trained and stopped and not trained & own and not trained & stopping
        assert stopped <= stopping and not stopped & own
    paired = validation["served"]["against the bundle's"]   # over the same users: the mean of the differences
    assert paired["difference"] == pytest.approx(validation["served"]["NDCG@10"] -
                                                 validation["recall order"]["served"]["NDCG@10"], abs=1e-9)
    assert 0 < paired["standard error"] < 0.1
    report = served_quality(QualityConfig(bundles=validation_root), say=lambda _: None)
    assert served_validation(bundle)["NDCG@10"] == pytest.approx(report["metrics"]["served"]["all users"]["NDCG@10"])
    # the folds' figures pooled are those of every user at once
    assert served_validation(bundle)["NDCG@10"] == pytest.approx(validation["recall order"]["served"]["NDCG@10"])
    assert served_validation(bundle, users=lists.users[folds == 0])["users"] == (folds == 0).sum()

    # a bundle holding out the ranker's own targets is refused
    refused = runner.invoke(app, ["build", "--data", str(ml100k_dataset.path), "--sasrec-run", str(trained_runs[0]),
                                  "--ncf-run", str(trained_runs[1]), "--bundles", str(tmp_path / "refused"),
                                  "--hold-out-last", "2", "--ranker-run", str(run)])
    assert refused.exit_code == 2 and "trained on the last 2" in refused.output

    # force the choice both ways: the run wins, or the recall order stays
    for wins in (True, False):
        (run / "validation.json").write_text(json.dumps({**validation, "served": {
            "NDCG@10": 1.0 if wins else 0.0, "against the bundle's": {"difference": 0.5 if wins else -0.5,
                                                                     "standard error": 0.01}}}))
        root = tmp_path / f"test-{wins}"
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, hold_out_last=1, ranker_runs=(run,)))
        bundle = load_bundle(root)
        assert bundle.manifest["rank"]["name"] == ("lgbm" if wins else "recall")
        # the run's cascade, every channel scoring its head, served as it was validated
        assert not wins or (bundle.ranker.head == 100 and bundle.ranker.scores_head)
        assert bundle.manifest["rank"]["choice"]["chosen"].startswith(str(run) if wins else "recall")
    bundle = load_bundle(tmp_path / "test-True")
    # the compiled trees the bundle scores with give LightGBM's own predictions, categorical
    # side features included
    booster = lightgbm.Booster(model_str=bundle.ranker.model.text)
    for user in (1, 300, 943):
        context = bundle.context(user)
        matrix = bundle.ranker.features.matrix(context, bundle.recaller.recall(context)[0])
        assert len(matrix) > 100
        np.testing.assert_allclose(bundle.ranker.model.predict(matrix), booster.predict(matrix), rtol=0, atol=1e-9)
    served, online = Pipeline(bundle), Pipeline(bundle, use_precomputed=False)
    for user in (1, 300, 943):
        stored = served.recommend(RecommendInput(user_id=user, n=30))
        computed = online.recommend(RecommendInput(user_id=user, n=30))
        assert stored.precomputed and stored.items.tolist() == computed.items.tolist()

    # a new user: nothing recalled, so the personalized slot is the group's most popular, ordered by
    # the ranker from the side features like the other slots, and the list goes by its score
    new_user = served.recommend(RecommendInput(n=10, gender="F", age=25, occupation="writer", explain=True))
    by_group = served.demographic.ranked(bundle.encoder.encode_request("F", 25, "writer", ""))[0][:len(served.popular_pool)]
    personalized = [k for k, slot in enumerate(new_user.slots) if slot == "personalized"]
    assert len(personalized) == 5 and set(bundle.item_ids(new_user.items[personalized])) <= set(by_group.tolist())
    assert all("gender and age (the 400 first), ordered for this user by the lgbm ranker" in new_user.reasons[k]
               for k in personalized)
    assert np.all(np.diff(new_user.scores) <= 0) and np.all(np.isfinite(new_user.rank_scores))
    group_order = Pipeline(bundle, slot_order="global").recommend(RecommendInput(n=10, gender="F", age=25,
                                                                                occupation="writer"))
    assert new_user.items.tolist() != group_order.items.tolist()


def _ranker_run(path, ranker, order, recall_order, served, served_as_bundled):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"ranker": ranker, "features": {}}))
    (path / "validation.json").write_text(json.dumps({
        "NDCG@10": order, "served": {"NDCG@10": served, "against the bundle's": {
            "difference": served - served_as_bundled, "standard error": 0.01}},
        "recall order": {"NDCG@10": recall_order, "served": {"NDCG@10": served_as_bundled}}}))
    return path


def test_the_build_chooses_the_run_whose_served_lists_win_on_validation(tmp_path):
    from movierec.rank.learned import choose_ranker

    best_order = _ranker_run(tmp_path / "a", "lgbm", 0.30, 0.10, 0.20, 0.15)
    best_served = _ranker_run(tmp_path / "b", "din", 0.20, 0.10, 0.25, 0.15)
    worse_than_recall = _ranker_run(tmp_path / "c", "ncf-list", 0.05, 0.10, 0.40, 0.15)
    assert choose_ranker([best_order, best_served, worse_than_recall])[0] == best_served
    assert choose_ranker([best_order])[0] == best_order
    assert choose_ranker([worse_than_recall])[0] is None          # its order loses to the recall order
    serves_worse = _ranker_run(tmp_path / "d", "din", 0.20, 0.10, 0.14, 0.15)
    assert choose_ranker([serves_worse])[0] is None               # the served lists lose to the bundle's own
    within_noise = _ranker_run(tmp_path / "f", "din", 0.20, 0.10, 0.155, 0.15)   # +0.005, half a standard error
    assert choose_ranker([within_noise])[0] is None
    assert choose_ranker([within_noise], margin=0.4)[0] == within_noise
    assert choose_ranker([within_noise, best_order], margin=0)[0] == best_order
    chosen, scored = choose_ranker([best_served])
    assert scored[str(best_served)]["served, against the bundle's"] == {"difference": pytest.approx(0.10),
                                                                        "standard error": 0.01}
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "config.json").write_text(json.dumps({"ranker": "din", "features": {}}))
    (tmp_path / "e" / "validation.json").write_text(json.dumps({"NDCG@10": 0.2, "recall order": {"NDCG@10": 0.1}}))
    with pytest.raises(ConfigError, match="not a finished ranker run"):   # a run without served figures
        choose_ranker([tmp_path / "e"])


def test_more_lists_of_earlier_items_train_the_ranker_and_never_leak(validation_root, ml100k_dataset, trained_runs,
                                                                    tmp_path, monkeypatch):
    """`movierec data --without-last 2`, runs trained on it and bundles built from them give
    each user's third and fourth last items as lists `train ranker --more-lists` trains on:
    the leakage guard holds the bundles to what their runs never saw, lists of the items the
    ranker validates on (or later ones) are refused, and the extra lists only ever train."""
    from conftest import ML100K
    from movierec.dataset.store import load_dataset
    from movierec.models.ncf.training import POSTERS_FILE
    from movierec.models.ranker import train as training
    from movierec.models.ranker.data import check_earlier

    runner = CliRunner()
    earlier = tmp_path / "earlier"
    result = runner.invoke(app, ["data", "--source", str(ML100K), "--out", str(earlier), "--store", "",
                                 "--plots", "", "--without-last", "2"])
    assert result.exit_code == 0, result.output
    dataset = load_dataset(earlier)
    assert dataset.signature() == ml100k_dataset.signature() and dataset.manifest["without_last"] == 2
    full, kept = (chronological(d.ratings, d.num_users) for d in (ml100k_dataset, dataset))
    for user in (1, 500, 943):
        assert kept.of(user).tolist() == full.of(user)[:-2].tolist()

    def build(runs, root, last):
        build_bundle(BuildOptions(earlier, *runs, root, hold_out_last=last))
        return load_bundle(root, with_rankings=False)

    # the full dataset's runs trained on the third last item: a bundle targeting it is refused
    with pytest.raises(ConfigError, match="saw the label"):
        check_no_leakage(build(trained_runs, tmp_path / "leaky", 1))
    runs = (tmp_path / "sasrec", tmp_path / "ncf")
    for model, run, knobs in (("sasrec", runs[0], ["--maxlen", "50", "--hidden", "16", "--loss", "ce"]),
                              ("ncf", runs[1], ["--posters", str(trained_runs[1] / POSTERS_FILE)])):
        result = runner.invoke(app, ["train", model, "--data", str(earlier), "--run-dir", str(run), "--epochs", "1",
                                     *knobs])
        assert result.exit_code == 0, result.output
        assert json.loads((run / "split.json").read_text()) == {"without_last": 2}
    more = [tmp_path / "earlier-1", tmp_path / "earlier-2"]
    validation = load_bundle(validation_root, with_rankings=False)
    for last, root in zip((1, 2), more):
        bundle = build(runs, root, last)
        check_no_leakage(bundle)
        check_earlier(bundle, validation)
    with pytest.raises(ConfigError, match="saw the label"):   # the fifth last item: the runs trained on it
        check_no_leakage(build(runs, tmp_path / "leaky-3", 3))
    # the validation bundle's own targets, or the test items, are not earlier items
    with pytest.raises(ConfigError, match="holds out"):
        check_earlier(validation, validation)
    build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "test", hold_out_last=1))
    with pytest.raises(ConfigError, match="holds out"):
        check_earlier(load_bundle(tmp_path / "test", with_rankings=False), validation)

    fits = []   # (users trained on, lists trained on, users stopped early on) of each model

    def recording(*args):
        fit = make_fitter(*args)

        def recorded(train, stop_on, model_dir):
            fits.append((set(train.users.tolist()), len(train), set(stop_on.users.tolist())))
            return fit(train, stop_on, model_dir)
        return recorded

    make_fitter = training._fitter
    monkeypatch.setattr(training, "_fitter", recording)
    command = ["train", "ranker", "--model", "lgbm", "--bundles", str(validation_root), "--trees", "20",
               "--pool-sample", "20"]
    more_options = [arg for root in more for arg in ("--more-lists", str(root))]
    for with_more in (False, True):
        result = runner.invoke(app, [*command, "--run-dir", str(tmp_path / f"ranker-{with_more}"),
                                     *(more_options if with_more else [])])
        assert result.exit_code == 0, result.output
    alone, with_more = fits[:5], fits[5:]
    lists = candidate_lists(validation, RankFeatures(FeatureSpec(validation.recaller.names, ("recall",), 0, 0),
                                                     ItemTable.build(validation.items, bundle_item_histories(validation),
                                                                     validation.encoder, None, None)), pool_sample=0)
    folds = user_folds(lists.users, RankerConfig().seed, 5)
    for fold, ((users, count, stopped), (more_users, more_count, more_stopped)) in enumerate(zip(alone, with_more)):
        own = set(lists.users[folds == fold].tolist()) | set(lists.users[folds == (fold + 1) % 5].tolist())
        # about three lists per user where there was one, none of the validating or stopping
        # folds' users, and early stopping on the same users as without
        assert users < more_users and not more_users & own and more_stopped == stopped
        assert more_count > 1.6 * count
    figures = [json.loads((tmp_path / f"ranker-{m}" / "validation.json").read_text()) for m in (False, True)]
    assert figures[0]["users"] == figures[1]["users"] == len(lists.users)
    config = json.loads((tmp_path / "ranker-True" / "config.json").read_text())
    assert config["config"]["more_lists"] == [str(root) for root in more]
