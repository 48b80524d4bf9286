"""The served lists of the session's fixed-seed ML-100K bundle, item for item, against a
committed fixture (tests/data/golden_ml100k.json).

The bundle is rebuilt every test session from tiny seeded training runs (conftest's
`trained_runs`), so this pins what a caller receives across refactorings of the stages.
A deliberate change of behaviour regenerates the fixture:

    MOVIEREC_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

import json
import os
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import LiveServer
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

FIXTURE = Path(__file__).parent / "data" / "golden_ml100k.json"
SLOT_LETTER = {pb.SLOT_POPULAR: "P", pb.SLOT_NEW: "N", pb.SLOT_PERSONALIZED: "S"}
GENRES = ["Action", "Comedy", "Drama", "Documentary", "Horror", "Romance", "Sci-Fi", "Thriller", "War",
          "Children's", "Film-Noir", "Western"]
OCCUPATIONS = ["writer", "programmer", "student", "engineer", "retired", "doctor", "", "nobody-knows"]


def golden_requests() -> list[dict]:
    """A few hundred requests, drawn with a fixed seed: known users, new users with side
    features, recent items, exclusions, filters, quota overrides, n from 1 to 50."""
    rng = np.random.default_rng(20261201)
    out = []

    def n() -> int:
        return len(out) % 50 + 1

    def some_items(count: int) -> list[int]:
        return [int(i) for i in rng.choice(np.arange(1, 1683), count, replace=False)]

    for user in rng.choice(np.arange(1, 944), 60, replace=False):
        out.append({"user_id": int(user), "n": n(), "explain": True})
    for _ in range(40):
        out.append({"n": n(), "explain": bool(rng.integers(2)), "side_features": {
            "gender": int(rng.integers(0, 3)), "age": int(rng.choice([0, 7, 17, 23, 31, 44, 52, 70])),
            "occupation": str(rng.choice(OCCUPATIONS)), "zip_code": str(rng.choice(["", "55414", "94043", "0"]))}})
    out.append({"n": 10})
    out.append({"user_id": 987654, "n": 10, "explain": True})
    for user in rng.choice(np.arange(1, 944), 40, replace=False):
        out.append({"user_id": int(user), "n": n(), "explain": True,
                    "recent_item_ids": some_items(int(rng.integers(1, 6))) + ([99999] if rng.random() < 0.2 else [])})
    for _ in range(15):
        out.append({"n": n(), "explain": True, "recent_item_ids": some_items(int(rng.integers(1, 4))),
                    "side_features": {"gender": int(rng.integers(0, 3)), "age": int(rng.integers(0, 70))}})
    for user in rng.choice(np.arange(1, 944), 25, replace=False):
        out.append({"user_id": int(user), "n": n(), "explain": True, "exclude_item_ids": some_items(5)})
    for user in rng.choice(np.arange(0, 944), 60, replace=False):
        filters = {}
        if rng.random() < 0.6:
            filters["include_genres"] = [str(g) for g in rng.choice(GENRES, int(rng.integers(1, 3)), replace=False)]
        if rng.random() < 0.4:
            filters["exclude_genres"] = [str(g) for g in rng.choice(GENRES, 1)]
        if rng.random() < 0.4:
            filters["min_year"] = int(rng.choice([1950, 1980, 1990, 1995]))
        if rng.random() < 0.3:
            filters["max_year"] = int(rng.choice([1970, 1990, 1996, 1998]))
        request = {"user_id": int(user), "n": n(), "explain": True, "filters": filters}
        if rng.random() < 0.3:
            request["recent_item_ids"] = some_items(2)
        out.append(request)
    for user in rng.choice(np.arange(0, 944), 30, replace=False):
        shares = [float(x) for x in rng.choice([0.0, 0.1, 0.5, 1.0, 2.0], 3)]
        if sum(shares) == 0:
            shares[2] = 1.0
        out.append({"user_id": int(user), "n": n(), "explain": True,
                    "quotas": dict(zip(("popular", "new", "personalized"), shares))})
    for n_items in range(1, 51):  # every n once more, for a known user with and without context
        user = int(rng.integers(1, 944))
        out.append({"user_id": user, "n": n_items} if n_items % 2 else
                   {"user_id": user, "n": n_items, "recent_item_ids": some_items(1)})
    return out


def to_request(spec: dict) -> pb.RecommendRequest:
    spec = dict(spec)
    side, filters, quotas = spec.pop("side_features", None), spec.pop("filters", None), spec.pop("quotas", None)
    request = pb.RecommendRequest(**spec)
    if side:
        request.side_features.CopyFrom(pb.SideFeatures(**side))
    if filters:
        request.filters.CopyFrom(pb.Filters(**filters))
    if quotas:
        request.quotas.CopyFrom(pb.Quotas(**quotas))
    return request


def served(response: pb.RecommendResponse) -> dict:
    return {"items": [i.item_id for i in response.items],
            "slots": "".join(SLOT_LETTER[i.slot] for i in response.items),
            "scores": [round(float(i.score), 5) for i in response.items],
            "channels": [",".join(i.channels) for i in response.items],
            "known_user": response.known_user,
            "ignored": list(response.ignored_item_ids)}


@pytest.fixture(scope="module")
def golden_server(bundle_root):
    from movierec.server.app import ServerConfig

    live = LiveServer(ServerConfig(bundles=bundle_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0))
    yield live
    live.stop()


def test_served_lists_equal_the_golden_fixture(golden_server):
    specs = golden_requests()
    assert len(specs) > 300
    with grpc.insecure_channel(golden_server.target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        answers = [served(stub.Recommend(to_request(spec), timeout=10)) for spec in specs]
    if os.environ.get("MOVIEREC_WRITE_GOLDEN"):
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps({"requests": specs, "answers": answers}, separators=(",", ":")) + "\n")
        pytest.skip(f"wrote {FIXTURE}")
    golden = json.loads(FIXTURE.read_text())
    assert golden["requests"] == specs, "the request list changed: regenerate the fixture on purpose"
    for spec, expected, got in zip(specs, golden["answers"], answers):
        assert got["items"] == expected["items"], spec
        assert got["slots"] == expected["slots"], spec
        assert got["channels"] == expected["channels"], spec
        assert (got["known_user"], got["ignored"]) == (expected["known_user"], expected["ignored"]), spec
        np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5, err_msg=str(spec))
