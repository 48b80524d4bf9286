"""Served quality: the report's metrics, personal slots, filters inside recall, time-cut bundles."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import LiveServer
from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.cli import app
from movierec.client.quality import QualityConfig, genre_diversity, served_quality
from movierec.dataset.evaluation import list_metrics, position_in_lists
from movierec.errors import ConfigError
from movierec.server.app import ServerConfig
from movierec.server.pipeline import Pipeline, RecommendInput

runner = CliRunner()


def test_list_metrics_on_hand_made_lists():
    lists = [np.array([5, 3, 9]), np.array([1, 2]), np.array([7, 8, 9, 4]), np.array([], dtype=np.int64)]
    positions = position_in_lists(lists, np.array([3, 6, 4, 1]))
    assert positions.tolist() == [1, -1, 3, -1]
    metrics = list_metrics(positions, [2, 10])
    assert metrics["HR@2"] == pytest.approx(1 / 4) and metrics["HR@10"] == pytest.approx(2 / 4)
    assert metrics["NDCG@2"] == pytest.approx((1 / np.log2(3)) / 4)
    assert metrics["NDCG@10"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / 4)
    assert metrics["MRR@2"] == pytest.approx(0.5 / 4) and metrics["MRR@10"] == pytest.approx((0.5 + 0.25) / 4)
    genres = np.zeros((5, 3), dtype=bool)
    genres[1] = [1, 0, 0]
    genres[2] = [1, 1, 0]
    genres[3] = [0, 0, 1]
    # distances 1-1/2, 1, 1 over the three pairs; a one-item list has no pair
    assert genre_diversity([np.array([1, 2, 3]), np.array([1])], genres) == pytest.approx((0.5 + 1 + 1) / 3)


@pytest.fixture(scope="module")
def held_out_root(ml100k_dataset, trained_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("held-out") / "bundles"
    build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, hold_out_last=1))
    return root


def test_the_report_scores_every_list_and_segment(held_out_root, ml100k_dataset):
    report = served_quality(QualityConfig(bundles=held_out_root, k=(5, 10), peers=("als",)), say=lambda _: None)
    assert report["users"] == 943 and report["split"] == {"hold_out_last": 1, "hold_out_after": "", "targets_before": ""}
    assert set(report["metrics"]) == {"served", "personalized slot", "sasrec channel", "ncf channel",
                                      "poster channel", "item2item channel", "popularity", "ALS (implicit)"}
    for name, by_segment in report["metrics"].items():
        overall = by_segment["all users"]
        assert overall["users"] == 943
        assert 0 <= overall["NDCG@5"] <= overall["HR@5"] <= overall["HR@10"] <= 1, name
        assert overall["MRR@10"] <= overall["NDCG@10"] + 1e-9, name
        assert sum(v["users"] for s, v in by_segment.items() if s != "all users") == 943
        assert 0 < report["coverage"][name] <= 1 and 0 <= report["genre_diversity"][name] <= 1
    # the personalized slot alone is the sasrec channel's order (the bundle's ranker is recall/sasrec)
    assert report["ranker"] == "recall"
    assert report["metrics"]["personalized slot"]["all users"] == pytest.approx(
        report["metrics"]["sasrec channel"]["all users"], abs=0.01)
    # one list for everyone covers the fewest items a user could be shown; the trained lists beat chance
    assert report["coverage"]["popularity"] < report["coverage"]["ALS (implicit)"]
    assert report["metrics"]["served"]["all users"]["HR@10"] > 10 / 1682


def test_the_report_over_grpc_equals_the_one_in_process(held_out_root, tmp_path):
    live = LiveServer(ServerConfig(bundles=held_out_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0))
    try:
        remote = served_quality(QualityConfig(bundles=held_out_root, target=live.target), say=lambda _: None)
    finally:
        live.stop()
    local = served_quality(QualityConfig(bundles=held_out_root), say=lambda _: None)
    assert remote["metrics"]["served"] == local["metrics"]["served"]
    assert remote["metrics"]["personalized slot"] == local["metrics"]["personalized slot"]
    result = runner.invoke(app, ["eval", "--bundles", str(held_out_root), "--json", str(tmp_path / "q.json"),
                                 "--plot", str(tmp_path / "q.png")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "q.json").read_text())["metrics"]["served"] == local["metrics"]["served"]
    assert (tmp_path / "q.png").stat().st_size > 1000 and "served quality" in result.output


def test_a_bundle_without_held_out_data_is_refused(bundle_root):
    with pytest.raises(ConfigError, match="nothing is held out"):
        served_quality(QualityConfig(bundles=bundle_root), say=lambda _: None)


def test_filters_reach_recall(bundle_root):
    bundle = load_bundle(bundle_root)
    response = Pipeline(bundle).recommend(RecommendInput(user_id=1, n=10, include_genres=["Documentary"],
                                                         explain=True))
    genres = bundle.items.set_index("raw_id").genres
    assert all("Documentary" in genres[i] for i in response.items)
    personalized = [k for k, slot in enumerate(response.slots) if slot == "personalized"]
    # at least the personalized slot's 5; the popular and new pools hold few documentaries, so
    # what they cannot fill goes to the personalized slot too
    assert len(personalized) >= 5 and not response.precomputed
    assert all(response.channels[k] for k in personalized)  # recalled, not refilled from the other slots
    assert all(response.reasons[k].startswith("personalized: #") for k in personalized)


def test_personal_slots_keep_their_sizes_and_draw_only_from_their_pools(bundle_root):
    bundle = load_bundle(bundle_root)
    personal, global_ = Pipeline(bundle, slot_pool=50), Pipeline(bundle, slot_order="global")
    popular_pool, new_pool = set(bundle.popular[:50].tolist()), set(bundle.new[:50].tolist())
    ids = bundle.item_ids
    ordered_differently = 0
    for user in (1, 42, 500, 943):
        for n in (1, 3, 10, 37):
            mine = personal.recommend(RecommendInput(user_id=user, n=n, explain=True))
            theirs = global_.recommend(RecommendInput(user_id=user, n=n))
            assert len(mine.items) == len(theirs.items) == n and len(set(mine.items)) == n
            for slot in ("popular", "new", "personalized"):
                assert mine.slots.count(slot) == theirs.slots.count(slot)
            for item, slot, reason in zip(ids(mine.items), mine.slots, mine.reasons):
                if slot == "popular":
                    assert item in popular_pool and "of the 50 most popular, ordered for this user" in reason
                elif slot == "new":
                    assert item in new_pool and "of the 50 newest, ordered for this user" in reason
            ordered_differently += mine.items.tolist() != theirs.items.tolist()
    assert ordered_differently > 0
    # a new user is ordered by popularity in the group (the recall ranker needs a history)
    new_user = personal.recommend(RecommendInput(n=10, gender="F", age=25, explain=True))
    assert any("popularity among users of the same gender and age" in r for r in new_user.reasons)


def test_the_list_comes_by_the_rankers_score_where_it_ordered_every_slot(bundle_root):
    bundle = load_bundle(bundle_root)
    by_score, by_slot = Pipeline(bundle), Pipeline(bundle, list_order="slots")
    moved = 0
    for user in (1, 42, 500, 943):
        for n in (3, 10, 37):
            mine = by_score.recommend(RecommendInput(user_id=user, n=n, explain=True))
            theirs = by_slot.recommend(RecommendInput(user_id=user, n=n, explain=True))
            # the same items from the same slots, for the same reasons; only where each goes differs
            assert sorted(zip(mine.items.tolist(), mine.slots, mine.reasons)) == \
                sorted(zip(theirs.items.tolist(), theirs.slots, theirs.reasons))
            assert np.all(np.diff(mine.scores) <= 0)
            assert theirs.slots == sorted(theirs.slots, key=["personalized", "new", "popular"].index)
            moved += mine.items.tolist() != theirs.items.tolist()
    assert moved > 0
    # a new user's slots are ordered by popularity in the group, scores of different kinds: slot by slot
    new_user = [p.recommend(RecommendInput(n=10, gender="F", age=25)) for p in (by_score, by_slot)]
    assert new_user[0].items.tolist() == new_user[1].items.tolist()


def test_a_time_cut_bundle_needs_runs_trained_before_the_cut(ml100k_dataset, trained_runs, tmp_path):
    from movierec.dataset.evaluation import build_task
    from movierec.models.ncf.config import NCFConfig
    from movierec.models.ncf.model import Features
    from movierec.models.ncf.training import train_ncf
    from movierec.models.runs import load_split
    from movierec.models.sasrec.config import SASRecConfig
    from movierec.models.sasrec.training import train_sasrec

    cut = "1998-03-01"
    with pytest.raises(ConfigError, match="has seen what a bundle with --hold-out-after"):
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "refused", hold_out_after=cut))
    data = load_split(ml100k_dataset.path, cut)
    task = build_task(data.split, "valid", data.sequences, data.dataset.num_items)
    train_sasrec(data.split.train, data.dataset.num_items,
                 SASRecConfig(maxlen=50, hidden=16, epochs=1, loss="ce", hold_out_after=cut), tmp_path / "s", task)
    train_ncf(data.split.train, Features.from_dataset(data.dataset), NCFConfig(epochs=1, posters=False, hold_out_after=cut),
              tmp_path / "n", task)
    root = tmp_path / "cut"
    build_bundle(BuildOptions(ml100k_dataset.path, tmp_path / "s", tmp_path / "n", root, hold_out_after=cut))
    bundle = load_bundle(root)
    assert bundle.manifest["split"] == {"hold_out_last": 0, "hold_out_after": cut}
    assert bundle.manifest["counts"]["interactions"] == len(data.dataset.ratings) < 100_000
    report = served_quality(QualityConfig(bundles=root), say=lambda _: None)
    served = report["metrics"]["served"]
    assert report["users"] == 327 and served["new users"]["users"] == 207
    earlier = served_quality(QualityConfig(bundles=root, targets_before="1998-03-15"), say=lambda _: None)
    assert 0 < earlier["users"] < 327
    # users whose every rating came after the cut are served as new users, from their side features
    first_after = bundle.users.raw_id[bundle.histories.sequences.lengths()[1:] == 0].iloc[0]
    response = Pipeline(bundle).recommend(RecommendInput(user_id=int(first_after), n=10))
    assert not response.known_user and len(response.items) == 10
