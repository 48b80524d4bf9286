"""The component model: plug-in channels, the merged candidates' recall signals, one feature
encoder for training and serving, and a serving path without Paddle."""

import dataclasses
import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from conftest import LiveServer
from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.rank.ranker import rank
from movierec.recall.channel import Candidates
from movierec.recall.channels import CHANNELS
from movierec.recall.context import ItemMask
from movierec.recall.merge import merge
from movierec.server.app import ServerConfig
from movierec.server.pipeline import Pipeline, RecommendInput
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc
from toy_channel import NewestChannel

CHANNELS.register("newest", NewestChannel)  # the plug-in's one registry line


def candidates(items, scores=None):
    items = np.array(items, dtype=np.int64)
    scores = np.linspace(1, 0, len(items)) if scores is None else scores
    return Candidates(items, np.asarray(scores, dtype=np.float32))


def test_merge_keeps_every_channel_score_and_rank():
    allowed = ~ItemMask.of(10, np.array([4]))
    results = [candidates([1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.5]), None, candidates([2, 6, 7], [3.0, 2.0, 1.0])]
    merged = merge(("a", "b", "c"), results, {"a": 2, "b": 5, "c": 2}, allowed)
    # b did not apply, so its quota is not refilled; a takes 1, 2; c skips 2 (taken) and takes 6, 7
    assert merged.items.tolist() == [1, 2, 6, 7]
    assert merged.primary.tolist() == [0, 0, 2, 2]
    assert merged.ranks.tolist() == [[0, -1, -1], [1, -1, 0], [-1, -1, 1], [-1, -1, 2]]
    np.testing.assert_allclose(merged.scores[1], [0.8, np.nan, 3.0])
    assert np.isnan(merged.scores[:, 1]).all() and merged.proposed.sum() == 5
    # a channel that runs dry leaves its quota to the others, in channel order
    dry = merge(("a", "c"), [candidates([1]), candidates([5, 6, 7, 8])], {"a": 3, "c": 1}, ~ItemMask.of(10))
    assert dry.items.tolist() == [1, 5, 6, 7]


def test_a_new_channel_is_one_module_and_one_registry_line(ml100k_dataset, trained_runs, tmp_path):
    root = tmp_path / "bundles"
    report = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root,
                                       channels=("sasrec:100", "newest:40", "item2item:20")))
    fragment = report.manifest["recall"]["channels"][1]
    assert fragment["name"] == "newest" and fragment["files"] == ["recall.newest.order.npy"]
    assert "recall.newest.order.npy" in report.manifest["checksums"]
    live = LiveServer(ServerConfig(bundles=root, address="127.0.0.1:0", metrics_port=0, watch_interval=0))
    try:
        with grpc.insecure_channel(live.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            response = stub.Recommend(pb.RecommendRequest(user_id=1, n=50, explain=True,
                                                          quotas=pb.Quotas(personalized=1)), timeout=10)
    finally:
        live.stop()
    assert len(response.items) == 50
    newest = [i for i in response.items if "newest" in i.channels]
    assert newest and all(i.slot == pb.SLOT_PERSONALIZED for i in newest)
    years = ml100k_dataset.items.set_index("raw_id").year
    assert max(years[i.item_id] for i in newest) == years.max()


def test_ten_channels_keep_their_flags_in_the_precomputed_rankings(ml100k_dataset, trained_runs, tmp_path):
    names = [f"newest{j}" for j in range(9)]
    for j, name in enumerate(names):
        CHANNELS.register(name, type(f"Newest{j}", (NewestChannel,), {"name": name}))
    root = tmp_path / "bundles"
    build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root,
                              channels=("sasrec:100",) + tuple(f"{name}:{5 + j}" for j, name in enumerate(names))))
    bundle = load_bundle(root)
    assert bundle.recaller.names == ("sasrec", *names) and bundle.precomputed.proposed.shape[1] == 2
    served, online = Pipeline(bundle), Pipeline(bundle, use_precomputed=False)
    for user in (1, 200, 943):
        stored = served.recommend(RecommendInput(user_id=user, n=50, explain=True, shares={"personalized": 1}))
        computed = online.recommend(RecommendInput(user_id=user, n=50, explain=True, shares={"personalized": 1}))
        assert stored.precomputed and stored.items.tolist() == computed.items.tolist()
        assert stored.channels == computed.channels
        # every candidate's flags, the tenth channel's included, come back from the file as computed
        context = bundle.context(user)
        merged, _ = bundle.recaller.recall(context)
        ranked = rank(bundle.ranker, context, bundle.recaller, merged)
        offline = bundle.precomputed.of(user)
        assert offline.items.tolist() == ranked.items.tolist()
        np.testing.assert_array_equal(offline.proposed, ranked.proposed)
        assert offline.proposed[:, 9].any() and offline.channels[9] == "newest8"


def test_a_second_and_a_third_sasrec_run_are_channels_of_their_own(ml100k_dataset, trained_runs, tmp_path):
    from movierec.dataset.evaluation import build_task
    from movierec.dataset.sequences import chronological, leave_last_out
    from movierec.errors import ConfigError
    from movierec.models.ranker.data import check_no_leakage
    from movierec.models.sasrec.config import SASRecConfig
    from movierec.models.sasrec.training import train_sasrec

    split = leave_last_out(chronological(ml100k_dataset.ratings, ml100k_dataset.num_users))
    second, third = tmp_path / "sasrec-seed-3", tmp_path / "sasrec-maxlen-20"
    for run, config in ((second, SASRecConfig(maxlen=50, hidden=16, epochs=1, loss="ce", seed=3)),
                        (third, SASRecConfig(maxlen=20, hidden=16, epochs=1, loss="ce", seed=5))):
        train_sasrec(split.train, ml100k_dataset.num_items, config, run,
                     build_task(split, "valid", split.train, ml100k_dataset.num_items))
    for name in ("sasrec2", "sasrec3"):
        with pytest.raises(ConfigError, match="needs run=DIR"):
            build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b",
                                      channels=("sasrec:50", f"{name}:20")))
    root = tmp_path / "bundles"
    report = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, hold_out_last=2,
                                       channels=("sasrec:100", f"sasrec2:50,run={second}", f"sasrec3:30,run={third}",
                                                 "item2item:20")))
    fragments = report.manifest["recall"]["channels"][1:3]
    assert [(f["name"], f["source"]["run"]) for f in fragments] == [("sasrec2", str(second)), ("sasrec3", str(third))]
    bundle = load_bundle(root)
    sasrec_channels = bundle.recaller.channels[:3]
    for recent in (np.zeros(0, np.int64), np.array([1, 2, 3])):
        context = bundle.context(7, recent=recent)
        merged, _ = bundle.recaller.recall(context)
        for column, channel in enumerate(sasrec_channels[1:], start=1):
            both = merged.proposed[:, [0, column]].all(axis=1)
            assert both.any() and not np.allclose(merged.scores[both, 0], merged.scores[both, column])
            # each channel keeps its own query: scoring the others beforehand changes nothing
            alone = channel.score(bundle.context(7, recent=recent), merged.items)
            for other in sasrec_channels:
                other.score(context, merged.items)
            np.testing.assert_allclose(channel.score(context, merged.items), alone, rtol=1e-6)
            np.testing.assert_allclose(merged.scores[both, column], alone[both], rtol=1e-5)
    # the leakage guard reads each further channel's run too
    check_no_leakage(bundle)
    options = {k: v for k, v in bundle.manifest["options"].items() if k not in ("sasrec_run", "ncf_run")}
    for name in ("sasrec2", "sasrec3"):
        channels = [fragment if fragment["name"] == name else {**fragment, "source": {}}
                    for fragment in bundle.manifest["recall"]["channels"]]
        manifest = {**bundle.manifest, "options": options, "split": {"hold_out_last": 3},
                    "recall": {**bundle.manifest["recall"], "channels": channels}}
        leaky = dataclasses.replace(bundle, manifest=manifest)
        with pytest.raises(ConfigError, match=f"{name} channel's run trained on all but the last 2"):
            check_no_leakage(leaky)


def test_the_feature_encoder_encodes_requests_as_training_did(bundle_root, ml100k_dataset):
    from movierec.models.ncf.model import Features

    bundle = load_bundle(bundle_root)
    assert bundle.encoder == ml100k_dataset.encoder
    training = Features.from_dataset(ml100k_dataset).user_features
    np.testing.assert_array_equal(bundle.user_features, training)
    users = ml100k_dataset.users
    stored = users[["gender_idx", "age_idx", "occupation_idx", "zip_prefix_idx"]].to_numpy()
    np.testing.assert_array_equal(training[users.user.to_numpy()], stored)
    # a request bringing a known user's raw side features (age in years, whole zip code,
    # occupation in any case) is encoded exactly as that user was for training
    raw = users.set_index("user")
    for user in (1, 77, 500, 943):
        row = raw.loc[user]
        request = bundle.encoder.encode_request(row.gender, int(row.age), row.occupation.upper(), row.zip_prefix + "99")
        np.testing.assert_array_equal(request, training[user])
    assert bundle.encoder.encode_request("", 0, "astronaut", "").tolist() == [0, 0, 0, 0]


def test_serving_imports_no_paddle(bundle_root):
    script = (
        "import sys, json\n"
        "import movierec.server.app\n"
        "after_import = 'paddle' in sys.modules\n"
        "from movierec.bundle.loader import load_bundle\n"
        "from movierec.server.pipeline import Pipeline, RecommendInput\n"
        f"pipeline = Pipeline(load_bundle({str(bundle_root)!r}), use_precomputed=False)\n"
        "for kwargs in ({'user_id': 1}, {'user_id': 1, 'recent': [5, 6]}, {'recent': [3]}, {'gender': 'F'}):\n"
        "    assert len(pipeline.recommend(RecommendInput(**kwargs)).items) == 10\n"
        "print(json.dumps([after_import, 'paddle' in sys.modules]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, False]


def test_unknown_components_and_bad_channel_specs_are_clear_errors(ml100k_dataset, trained_runs, tmp_path):
    from movierec.errors import ConfigError

    for channels, message in ((("lsh:10",), "unknown recall channel 'lsh'"), (("sasrec",), "NAME:QUOTA"),
                              (("sasrec:10", "sasrec:20"), "each recall channel once"),
                              (("item2item:10,bogus=1",), "takes no parameter bogus"),
                              (("item2item:10,neighbours=many",), "neighbours must be an integer")):
        with pytest.raises(ConfigError, match=message):
            build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", channels=channels))
    with pytest.raises(ConfigError, match="unknown ranker"):
        build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, tmp_path / "b", ranker="lambdamart"))
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())
