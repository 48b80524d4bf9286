"""Where a bundle keeps its per-user rankings (`rank.precomputed`): in the bundle itself
(`rankings.npz`, the default), or in Redis for catalogues of users too many for every server to
hold in memory (about 6 KB a user on ML-1M: 10 million users would be ~60 GB).

Both answer `user(u) -> UserRanking` (the `RankingStore` protocol). In Redis each user is one
key, `<prefix>:<version>:<user>`, holding the user's ranking as an `.npz` (no pickle), and
`<prefix>:<version>:meta` records how many users, the channels and a digest of every payload,
checked when a server opens the bundle; a store that does not match is refused like a
corrupt file. Keys of a bundle version are removed when the version is pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Protocol

from movierec.errors import MovieRecError

from .precomputed import PrecomputedRankings, UserRanking

SLOTS = ("popular", "new")
KEY_PREFIX = "movierec:rankings"
URL_VARIABLE = "MOVIEREC_RANKINGS_URL"   # overrides the manifest's URL (which holds no password)


class RankingStoreError(MovieRecError):
    """A ranking store that cannot be reached or does not hold what the bundle says."""


class RankingStore(Protocol):
    channels: tuple
    num_users: int

    def user(self, user: int) -> UserRanking: ...


def _redis(url: str):
    try:
        import redis
    except ImportError:
        raise RankingStoreError("rankings in Redis need the redis client: pip install 'movierec[redis]'") from None
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
    except redis.RedisError as exc:
        raise RankingStoreError(f"cannot reach the ranking store at {_redact(url)}: {exc}") from None
    return client


def _redact(url: str) -> str:
    from movierec.store.db import redact

    return redact(url)


class RedisRankings:
    def __init__(self, client, prefix: str, channels: tuple, num_users: int):
        self.client, self.prefix, self.channels, self.num_users = client, prefix, channels, num_users

    def user(self, user: int) -> UserRanking:
        payload = self.client.get(f"{self.prefix}:{user}")
        if payload is None:
            raise RankingStoreError(f"the ranking store lost user {user} of {self.prefix}")
        return UserRanking.from_bytes(payload, SLOTS)

    @staticmethod
    def write(url: str, version: str, rankings: PrecomputedRankings, batch: int = 1000) -> dict:
        """Every user's ranking into Redis; returns the manifest's fragment."""
        client = _redis(url)
        prefix = f"{KEY_PREFIX}:{version}"
        digest = hashlib.sha256()
        pipe = client.pipeline(transaction=False)
        for user in range(1, rankings.num_users + 1):
            payload = rankings.user(user).to_bytes()
            digest.update(hashlib.sha256(payload).digest())
            pipe.set(f"{prefix}:{user}", payload)
            if user % batch == 0:
                pipe.execute()
        meta = {"users": rankings.num_users, "channels": list(rankings.channels), "sha256": digest.hexdigest()}
        pipe.set(f"{prefix}:meta", json.dumps(meta))
        pipe.execute()
        return {"store": "redis", "url": _redact(url), "prefix": prefix, **meta}

    @classmethod
    def open(cls, fragment: dict) -> "RedisRankings":
        client = _redis(os.environ.get(URL_VARIABLE, fragment["url"]))
        saved = client.get(f"{fragment['prefix']}:meta")
        meta = json.loads(saved) if saved else None
        expected = {key: fragment[key] for key in ("users", "channels", "sha256")}
        if meta != expected:
            raise RankingStoreError(f"the ranking store holds {'nothing' if meta is None else 'other rankings'} for "
                                    f"{fragment['prefix']}; rebuild the bundle")
        return cls(client, fragment["prefix"], tuple(meta["channels"]), int(meta["users"]))

    @staticmethod
    def drop(url: str, prefix: str) -> int:
        """Remove a bundle version's keys; returns how many."""
        client = _redis(os.environ.get(URL_VARIABLE, url))
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
