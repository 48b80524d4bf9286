"""Cold start: the content channel and the two-tower channel, on a planted dataset where what
a user likes follows from their gender and what a movie is follows from its plot; and the
two-tower model's numpy export against Paddle."""

from __future__ import annotations

import numpy as np
import paddle
import pandas as pd
import pytest

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.loader import load_bundle
from movierec.dataset.readers import RawRelease
from movierec.dataset.store import load_dataset, write_dataset
from movierec.models.content import ContentConfig, train_content
from movierec.models.ncf.config import NCFConfig
from movierec.models.runs import train_run
from movierec.models.sasrec.config import SASRecConfig
from movierec.models.two_tower.config import TwoTowerConfig

WORDS = {"Action": "explosion chase gun fight car police heist", "Romance": "love wedding kiss heart letter date couple"}
MOVIES = 120
USERS = 160
LATE = 10               # movies 111..120 are first rated after the cut
CUT = "1970-01-20"      # 1,641,600 s: the planted ratings before it are at 1,000,000 s and after
AFTER_CUT = 2_000_000


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Men rate action movies, women romances; each movie's plot speaks of its genre."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("planted")
    genres = np.where(np.arange(1, MOVIES + 1) % 2 == 0, "Action", "Romance")
    movies = pd.DataFrame({"movie_raw": np.arange(1, MOVIES + 1), "title": [f"Movie {i} (1999)" for i in range(1, MOVIES + 1)],
                           "year": 1999, "genres": genres,
                           "plot": [" ".join(rng.choice(WORDS[g].split(), 5)) for g in genres]})
    users = pd.DataFrame({"user_raw": np.arange(1, USERS + 1), "gender": np.where(np.arange(USERS) % 2, "M", "F"),
                          "age": 25, "occupation": "writer", "zip": "12345"})
    rows = []
    for user, gender in zip(users.user_raw, users.gender):
        liked = movies.movie_raw[(movies.genres == ("Action" if gender == "M" else "Romance"))
                                 & (movies.movie_raw <= MOVIES - LATE)].to_numpy()
        for t, movie in enumerate(rng.choice(liked, 12, replace=False)):
            rows.append((user, movie, int(rng.integers(4, 6)), 1_000_000 + t))
        late = movies.movie_raw[(movies.genres == ("Action" if gender == "M" else "Romance"))
                                & (movies.movie_raw > MOVIES - LATE)].to_numpy()
        rows.append((user, int(rng.choice(late)), 5, AFTER_CUT))   # the last movies come out after the cut
    ratings = pd.DataFrame(rows, columns=["user_raw", "movie_raw", "rating", "timestamp"])
    ratings["row"] = np.arange(len(ratings))
    data = write_dataset(RawRelease("planted", ratings, users, movies, [], {}), root / "data", "test",
                         {"ratings": {"path": "planted"}})
    sasrec = root / "sasrec"
    train_run("sasrec", data, sasrec, SASRecConfig(maxlen=20, hidden=16, epochs=2, loss="ce"), say=lambda _: None)
    ncf = root / "ncf"
    train_run("ncf", data, ncf, NCFConfig(epochs=1, posters=False), say=lambda _: None)
    content = root / "content"
    train_content(data, sasrec, content, ContentConfig(dim=8, min_count=2), say=lambda _: None)
    tower = root / "tower"
    train_run("two_tower", data, tower, TwoTowerConfig(dim=16, hidden=32, epochs=4, batch_size=256, hard_negatives=5),
              say=lambda _: None, content_run=content)
    return {"data": data, "sasrec": sasrec, "ncf": ncf, "content": content, "tower": tower, "root": root,
            "genre_of": dict(zip(movies.movie_raw, genres))}


def _share_of_genre(bundle, channel_name: str, context, genre: str, genre_of: dict, k: int = 10) -> float:
    channel = next(c for c in bundle.recaller.channels if c.name == channel_name)
    found = channel.retrieve(context, k, context.allowed)
    raw = bundle.item_raw_ids()[found.items]
    return float(np.mean([genre_of[int(r)] == genre for r in raw]))


def test_the_content_and_two_tower_channels_recall_the_planted_taste(planted):
    root = planted["root"] / "bundles"
    build_bundle(BuildOptions(planted["data"], planted["sasrec"], planted["ncf"], root, content_run=planted["content"],
                              channels=("sasrec:20", "content:20", f"two_tower:20,run={planted['tower']}")))
    bundle = load_bundle(root)
    genre_of = planted["genre_of"]
    action = np.array([i for i in range(1, MOVIES + 1) if genre_of[int(bundle.item_raw_ids()[i])] == "Action"])
    # content: three action movies watched -> action movies recalled (random: half)
    context = bundle.context(0, bundle.encoder.encode_request("", 0, "", ""), recent=action[:3])
    assert _share_of_genre(bundle, "content", context, "Action", genre_of) >= 0.9
    # two-tower: a new user known by gender alone, no event -> that gender's genre
    for gender, genre in (("M", "Action"), ("F", "Romance")):
        context = bundle.context(0, bundle.encoder.encode_request(gender, 25, "writer", "12345"))
        assert _share_of_genre(bundle, "two_tower", context, genre, genre_of) >= 0.8, gender


def test_movies_no_one_rated_get_sasrec_vectors_mapped_from_content(planted, tmp_path):
    """Runs trained before the cut never saw the last movies: their SASRec vectors come from the
    content map, and the sasrec channel scores them by genre like the movies it learned."""
    sasrec = tmp_path / "sasrec-cut"
    train_run("sasrec", planted["data"], sasrec, SASRecConfig(maxlen=20, hidden=16, epochs=3, loss="ce",
                                                               hold_out_after=CUT), say=lambda _: None)
    ncf = tmp_path / "ncf-cut"
    train_run("ncf", planted["data"], ncf, NCFConfig(epochs=1, posters=False, hold_out_after=CUT), say=lambda _: None)
    content = tmp_path / "content-cut"
    train_content(planted["data"], sasrec, content, ContentConfig(dim=8, min_count=2), say=lambda _: None)
    report = build_bundle(BuildOptions(planted["data"], sasrec, ncf, tmp_path / "b", content_run=content,
                                       channels=("sasrec:20", "item2item:10"), hold_out_after=CUT))
    assert report.manifest["recall"]["channels"][0]["source"]["mapped_from_content"] == LATE
    bundle = load_bundle(tmp_path / "b")
    late = bundle.item_ids(np.arange(MOVIES - LATE + 1, MOVIES + 1))
    genre_of = planted["genre_of"]
    sasrec_channel = bundle.recaller.channels[0]
    for user in (1, 2):   # a woman, a man
        context = bundle.context(bundle.user_id(user))
        scores = sasrec_channel.score(context, late)
        liked = "Action" if user % 2 == 0 else "Romance"
        mine = np.array([genre_of[int(r)] == liked for r in bundle.item_raw_ids()[late]])
        assert scores[mine].mean() > scores[~mine].mean(), user


def test_the_two_tower_numpy_export_equals_paddle(planted):
    from movierec.models.two_tower.training import load_two_tower, user_vectors

    dataset = load_dataset(planted["data"])
    model, inputs = load_two_tower(planted["tower"], dataset)
    rng = np.random.default_rng(0)
    for p in model.parameters():   # away from the trained optimum, where small differences hide
        p.set_value(p.numpy() + rng.normal(scale=0.05, size=p.shape).astype(np.float32))
    model.eval()
    trained = np.ones(dataset.num_items + 1, bool)
    trained[[3, 7]] = False
    scorer = model.export(trained)
    with paddle.no_grad():
        expected_items = model.items(paddle.arange(dataset.num_items + 1, dtype="int64"),
                                     paddle.to_tensor(trained.astype(np.float32))).numpy()
    np.testing.assert_allclose(scorer.item_vectors[1:], expected_items[1:], atol=1e-5)
    new = scorer.movie_vectors(inputs.item_genres[[3, 7]], np.array([1999, 1999]), inputs.content[[3, 7]])
    np.testing.assert_allclose(new, expected_items[[3, 7]], atol=1e-5)
    histories = [np.zeros(0, np.int64), rng.integers(1, MOVIES + 1, 3), rng.integers(1, MOVIES + 1, 40)]
    for user in (0, 1, 77):
        expected = user_vectors(model, inputs, np.full(3, user), histories)
        for row, history in enumerate(histories):
            got = scorer.user_vector(user, inputs.user_features[user], history)
            np.testing.assert_allclose(got, expected[row], atol=1e-5)


def test_a_movie_added_with_upsert_items_gets_a_content_vector_and_is_recalled(planted, tmp_path):
    """A new action movie, known by its title, genre, year and plot alone, arrives through
    UpsertItems: the content channel (and the SASRec channel, through the content map) recall it
    for a user who likes action, at once."""
    import grpc

    from conftest import LiveServer
    from movierec.server.app import ServerConfig
    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc
    from movierec.store.events import EventStore, ItemRecord

    dataset = load_dataset(planted["data"])
    store_url = str(tmp_path / "store.db")
    store = EventStore(store_url)
    store.upsert_items([ItemRecord(int(r.raw_id), r.title, int(r.year), tuple(r.genres.split("|")), r["plot"])
                        for _, r in dataset.items.iterrows()])
    store.close()
    root = tmp_path / "bundles"
    build_bundle(BuildOptions(planted["data"], planted["sasrec"], planted["ncf"], root, content_run=planted["content"],
                              channels=("sasrec:10", "content:10", f"two_tower:10,run={planted['tower']}")))
    live = LiveServer(ServerConfig(bundles=root, store=store_url, address="127.0.0.1:0", metrics_port=0,
                                   watch_interval=0))
    try:
        with grpc.insecure_channel(live.target) as channel:
            reply = pb_grpc.IngestStub(channel).UpsertItems(pb.UpsertItemsRequest(items=[pb.Movie(
                item_id=5000, title="Brand New Heist (2000)", year=2000, genres=["Action"],
                plot="explosion chase gun fight car police heist")]), timeout=10)
            assert reply.inserted == 1
        pipeline = live.running.holder.served.pipeline
        new_id = pipeline.catalogue.item_of_raw[5000]
        assert new_id == dataset.num_items + 1
        man = load_bundle(root).user_id(2)    # user 2 rated action movies only
        context = pipeline.context_of(2)
        assert context.user == man and len(context.allowed) == dataset.num_items + 2
        channels = {c.name: c for c in pipeline.bundle.recaller.channels}
        assert new_id in channels["content"].retrieve(context, 10, context.allowed).items.tolist()
        woman = pipeline.context_of(1)
        assert new_id not in channels["content"].retrieve(woman, 10, woman.allowed).items.tolist()
        for name in ("sasrec", "two_tower"):   # in their indexes too, with vectors from content
            everything = channels[name].retrieve(context, dataset.num_items + 1, context.allowed)
            assert new_id in everything.items.tolist(), name
    finally:
        live.stop()
